"""Typed protocol errors (one root, Local vs Remote, as in h11).

``RemoteProtocolError``: the peer broke the protocol. For the helper role these are exactly the
cases where qemu-pr-helper closes the connection without an answer (protocol note 2.1); the
daemon logs the reason and closes. Its subclasses name each refusal the codec tells apart, so
callers decide on the type (e.g. which refusals qemu-pr-helper also reports on stderr), never on
the message, which stays the C helper's wording where it has one.
``LocalProtocolError``: our own side tried to do something the protocol forbids, e.g. a reply
that would make QEMU abort on its ``sz`` assertion.
"""

from __future__ import annotations

from scsi_pr.helper.errors import HelperError


class ProtocolError(HelperError):
    """Root of every error raised by ``scsi_pr.helper.proto``."""


class LocalProtocolError(ProtocolError):
    """This side misused the connection (wrong event for the state, invalid reply)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something qemu-pr-helper would refuse by closing the socket."""


# -- what a client (QEMU) may get wrong; the helper closes the connection ---------------------
class UnsupportedFeatures(RemoteProtocolError):
    """The client's feature word asks for a feature the helper does not offer."""


class MissingFileDescriptor(RemoteProtocolError):
    """A CDB arrived without an fd (qemu-pr-helper: "No file descriptor in request.")."""


class TooManyFileDescriptors(RemoteProtocolError):
    """More than one fd arrived with one CDB."""


class UnsupportedOpcode(RemoteProtocolError):
    """The CDB is not PERSISTENT RESERVE IN/OUT (qemu-pr-helper: "Invalid CDB, ...")."""


class TransferTooLong(RemoteProtocolError):
    """The CDB's transfer length exceeds the helper's data buffer."""


# -- what a helper may get wrong; the client refuses the reply --------------------------------
class UnsolicitedData(RemoteProtocolError):
    """The helper sent bytes while no request was outstanding."""


class ResponseTooLong(RemoteProtocolError):
    """The reply's ``sz`` is negative or exceeds the request's ALLOCATION LENGTH."""


# -- either side -------------------------------------------------------------------------------
class ShortRead(RemoteProtocolError):
    """The peer closed the connection in the middle of a frame."""
