"""The root of every error ``scsi_pr.helper`` raises on purpose.

Subclasses live beside the code that raises them (protocol errors in ``proto.errors``, option
errors beside the option parsers, executor errors beside the executors); callers decide on the
type, never on the message text.
"""

from __future__ import annotations


class HelperError(Exception):
    """Root of the errors raised by ``scsi_pr.helper``."""
