"""scsi-pr: SCSI persistent reservations under virtualisation.

One import package whose parts live in the checkout's top-level folders (setuptools
``package-dir`` maps them): ``scsi_pr.sim`` (the sans-IO logical unit, ``sim/``),
``scsi_pr.helper`` (the qemu-pr-helper replacement, ``helper/``) and ``scsi_pr.rig`` (LIO rig, VM
runner, pytest plugin, scenarios, ``rig/``).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

# In a checkout the parts sit beside this folder, not inside it. An editable install maps them with
# its own import finder; this makes a bare checkout (PYTHONPATH=., the VM guest) import the same
# way. An installed wheel has them inside the package, and its parent holds no pyproject.toml.
_parent = Path(__file__).resolve().parent.parent
#: the source checkout this package runs from, or None for an installed wheel
CHECKOUT: Path | None = (
    _parent
    if (_parent / "pyproject.toml").is_file() and (_parent / "sim" / "__init__.py").is_file()
    else None
)
if CHECKOUT is not None:
    __path__.append(str(CHECKOUT))  # type: ignore[name-defined]


def checkout_root() -> Path:
    """Where a checkout's own files (``docs/``, ``scripts/``) are for a developer command that
    reads or rewrites them: the checkout, else the current directory (an installed wheel run
    in a copy of the tree, as the mutation stage is)."""
    return CHECKOUT if CHECKOUT is not None else Path.cwd()
