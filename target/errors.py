"""The root of every error ``scsi_pr.target`` raises on purpose.

Subclasses live beside the code that raises them (protocol errors in ``proto.errors`` and next
to the framer, login and transfer code); callers decide on the type, never on the message text.
"""

from __future__ import annotations


class TargetError(Exception):
    """Root of the errors raised by ``scsi_pr.target``."""
