"""Where the ``scsi-pr-helper`` program is: one lookup for everything that starts one.

The interpreter's own ``bin/`` first (a venv's console script is not always on PATH, e.g. under
sudo or in the VM guest), then PATH.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from scsi_pr.helper.errors import HelperError

PROGRAM = "scsi-pr-helper"


class HelperNotInstalled(HelperError):
    """No ``scsi-pr-helper`` beside this interpreter nor on PATH."""


def helper_executable() -> str:
    """The path of ``scsi-pr-helper``; HelperNotInstalled names what to install."""
    exe = Path(sys.executable).parent / PROGRAM
    if exe.exists():
        return str(exe)
    found = shutil.which(PROGRAM)
    if found is None:
        raise HelperNotInstalled(f"{PROGRAM} is not installed (pip install scsi-pr)")
    return found
