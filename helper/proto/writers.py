"""Event -> bytes. Pure; the I/O edge attaches a request's fd to the first CDB byte."""

from __future__ import annotations

from scsi_pr.helper.proto.events import RESULT_AND_SIZE, Features, Request, Response


def write_features(event: Features) -> bytes:
    return event.flags.to_bytes(4, "big")


def write_request(event: Request) -> bytes:
    """CDB (16 bytes) then, for PR OUT, the parameter list; QEMU writes them separately."""
    return event.cdb + event.data


def write_response(event: Response) -> bytes:
    return RESULT_AND_SIZE.pack(event.status, len(event.data)) + event.sense + event.data
