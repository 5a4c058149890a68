"""The root of every error ``scsi_pr.rig`` raises on purpose.

Subclasses live beside the code that raises them (``lio.LioUnavailable``, ``vm.VmError``,
``backends.BackendUnavailable``, ...). The one exception that is not a ``RigError`` is the pytest
plugin's ``DeadlineExceeded``, a ``BaseException`` on purpose (nothing may swallow it).
"""

from __future__ import annotations


class RigError(Exception):
    """Root of the errors raised by ``scsi_pr.rig``."""
