"""The root of every error ``scsi_pr.rig`` raises on purpose.

Subclasses live beside the code that raises them (``lio.LioUnavailable``, ``vm.VmError``,
``backends.BackendUnavailable``, ...). The one exception that is not a ``RigError`` is the pytest
plugin's ``DeadlineExceeded``, a ``BaseException`` on purpose (nothing may swallow it).
"""

from __future__ import annotations


class RigError(Exception):
    """Root of the errors raised by ``scsi_pr.rig``."""


def reason(error: BaseException) -> str:
    """Why ``error`` happened, as a message after a path says it: an OSError's strerror (not
    its errno and filename, which the message gives its own way), else the error's text."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
