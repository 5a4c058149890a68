"""RemoteProtocolError: the class says how to react, an instance may say otherwise."""

from __future__ import annotations

from scsi_pr.target.proto import HeaderDigestError, RejectReason
from scsi_pr.target.proto.errors import RemoteProtocolError


def test_an_instance_may_override_its_class_reaction() -> None:
    plain = RemoteProtocolError("x")
    assert (plain.reject_reason, plain.close_connection) == (RejectReason.PROTOCOL_ERROR, False)
    silent = RemoteProtocolError("x", reject_reason=None, close_connection=True)
    assert (silent.reject_reason, silent.close_connection) == (None, True)
    kept = HeaderDigestError("x", close_connection=False)  # the class closes, this one not
    assert kept.close_connection is False and HeaderDigestError("y").close_connection is True


def test_the_header_is_attached_later_or_at_once() -> None:
    error = RemoteProtocolError("x", header=b"h" * 48)
    assert error.header == b"h" * 48
    assert error.with_header(b"g" * 48) is error and error.header == b"g" * 48
