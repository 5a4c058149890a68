"""Typed protocol errors (one root, Local vs Remote, as in h11).

``RemoteProtocolError``: the peer broke the protocol. For the helper role these are exactly the
cases where qemu-pr-helper closes the connection without an answer (protocol note 2.1); the
daemon logs the reason and closes. ``LocalProtocolError``: our own side tried to do something
the protocol forbids, e.g. a reply that would make QEMU abort on its ``sz`` assertion.
"""

from __future__ import annotations

from scsi_pr.helper.errors import HelperError


class ProtocolError(HelperError):
    """Root of every error raised by ``scsi_pr.helper.proto``."""


class LocalProtocolError(ProtocolError):
    """This side misused the connection (wrong event for the state, invalid reply)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something qemu-pr-helper would refuse by closing the socket."""
