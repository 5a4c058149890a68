"""The root of every error the model raises.

Callers decide on the type: ``except SimError`` catches everything ``scsi_pr.sim`` raises on
purpose (a malformed TransportID, an unreadable APTPL state, a command the caller asked to
terminate), never a programming error such as ``TypeError``.
"""

from __future__ import annotations


class SimError(Exception):
    """Root of the errors raised by ``scsi_pr.sim``."""
