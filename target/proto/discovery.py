"""Text Requests in full feature phase: SendTargets (RFC 7143 Appendix C) and long answers.

``send_targets`` answers one ``SendTargets=<value>`` from the list of targets (an input):
``All`` in a discovery session names every target the initiator may see, an empty value in a
normal session the session's own target, an iSCSI name that target if visible; each with one
``TargetAddress=<host>:<port>,<portal group tag>`` per portal. ``All`` in a normal session and an
empty value in a discovery session are answered ``Reject``.

``TextExchange`` runs one Text Request/Response exchange (11.10/11.11): it joins requests split
with the C bit, and splits an answer longer than the initiator's MaxRecvDataSegmentLength over
several responses, each but the last with F=0 and a Target Transfer Tag the initiator sends
back (empty) to fetch the next part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from scsi_pr.target.proto.constants import RESERVED_TAG, RejectReason
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError
from scsi_pr.target.proto.login import TargetNode
from scsi_pr.target.proto.negotiation import KEYS, SessionParameters
from scsi_pr.target.proto.pdus import TextRequest, TextResponse
from scsi_pr.target.proto.text import (
    NOT_UNDERSTOOD,
    REJECT,
    Pairs,
    TextAccumulator,
    ValueFormatError,
    build_text,
    parse_number,
    split_text,
)

ISCSI_PORT = 3260  # IANA
#: the one key an initiator may declare again in full feature phase
MRDSL = KEYS["MaxRecvDataSegmentLength"]


@dataclass(frozen=True)
class Portal:
    """A network portal of this target: where initiators connect."""

    host: str
    port: int = ISCSI_PORT
    group_tag: int = 1

    def __post_init__(self) -> None:
        if not self.host or not 0 < self.port < 65536 or not 0 <= self.group_tag <= 0xFFFF:
            raise LocalProtocolError(f"bad portal {self.host!r}:{self.port},{self.group_tag}")

    @property
    def address(self) -> str:
        """13.8: ``domainname[:port][,portal-group-tag]``, an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port},{self.group_tag}"


def send_targets(
    value: str,
    *,
    targets: Sequence[TargetNode],
    portals: Sequence[Portal],
    initiator_name: str,
    session_target: str | None,
    discovery: bool,
) -> list[tuple[str, str]]:
    """The answer to ``SendTargets=value`` (Appendix C), targets filtered by their ACLs."""
    visible = [t.name for t in targets if t.admits(initiator_name)]
    if value == "All":
        if not discovery:
            return [("SendTargets", REJECT)]
        names = visible
    elif value == "":
        if discovery or session_target is None:
            return [("SendTargets", REJECT)]
        names = [session_target]
    else:
        names = [value] if value in visible else []
    out: list[tuple[str, str]] = []
    for name in names:
        out.append(("TargetName", name))
        out += [("TargetAddress", portal.address) for portal in portals]
    return out


def answer_text(
    pairs: Pairs,
    params: SessionParameters,
    targets: Sequence[TargetNode],
    portals: Sequence[Portal],
) -> tuple[list[tuple[str, str]], SessionParameters]:
    """The answer to a Text Request's keys in full feature phase, and the session's parameters
    after it: SendTargets; MaxRecvDataSegmentLength, declarative and "Use: ALL" (13.12), may
    change now; every other key stays as negotiated at login (``Reject``, or
    ``NotUnderstood`` for a key this target does not know)."""
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if key == "SendTargets":
            out += send_targets(
                value,
                targets=targets,
                portals=portals,
                initiator_name=params.initiator_name,
                session_target=params.target_name,
                discovery=params.discovery,
            )
        elif key == MRDSL.key:
            try:
                declared = parse_number(value, MRDSL.low, MRDSL.high)
            except ValueFormatError:
                out.append((key, REJECT))
                continue
            params = replace(params, max_recv_data_segment_length=declared)
        else:
            out.append((key, REJECT if key in KEYS else NOT_UNDERSTOOD))
    return out, params


class TextExchangeError(RemoteProtocolError):
    """A Text Request that does not fit the exchange in progress (a wrong or stale TTT)."""

    reject_reason = RejectReason.INVALID_PDU_FIELD


class TextExchange:
    """One connection's Text Request/Response exchanges, answered by ``answer(pairs)``.

    ``receive`` returns the response's fields (without sequence numbers, which the connection
    adds): ``(data, final, continues, target_transfer_tag)``.
    """

    def __init__(
        self,
        answer: Callable[[Pairs], list[tuple[str, str]]],
        allocate_tag: Callable[[], int],
        release_tag: Callable[[int], None] = lambda tag: None,
    ) -> None:
        self._answer = answer
        self._allocate = allocate_tag
        self._release = release_tag
        self._request = TextAccumulator()
        self._itt: int | None = None
        self._pending: list[tuple[bytes, bool]] = []  # answer parts not sent yet
        self._more = False
        self._ttt = RESERVED_TAG

    def receive(self, request: TextRequest, max_segment: int) -> TextResponse:
        """The next Text Response (sequence numbers zero: the caller fills them in)."""
        if self._itt is not None and request.initiator_task_tag != self._itt:
            self._reset()  # a new ITT ends the old exchange (11.10.2: the initiator gave up)
        self._itt = request.initiator_task_tag
        if self._pending:
            if request.target_transfer_tag != self._ttt or request.data:
                raise TextExchangeError("a continuation must echo the TTT with no data")
            return self._next_part(request)
        if request.target_transfer_tag not in (RESERVED_TAG, self._ttt):
            raise TextExchangeError(f"TTT {request.target_transfer_tag:#x} names no exchange")
        pairs = self._request.add(request.data, request.continues)
        if pairs is None:  # C=1: acknowledge with an empty response (11.10.2)
            return self._response(request, b"", final=False, continues=False)
        self._more = not request.final  # F=0: the initiator has more to say (11.10.1)
        self._pending = split_text(build_text(self._answer(pairs)), max_segment)
        return self._next_part(request)

    def _next_part(self, request: TextRequest) -> TextResponse:
        chunk, continues = self._pending.pop(0)
        final = not self._pending and not self._more
        if self._ttt != RESERVED_TAG:
            self._release(self._ttt)
        self._ttt = RESERVED_TAG if final else self._allocate()
        response = self._response(request, chunk, final=final, continues=continues)
        if final:
            self._itt = None
        return response

    def _response(
        self, request: TextRequest, data: bytes, *, final: bool, continues: bool
    ) -> TextResponse:
        return TextResponse(
            final=final,
            continues=continues,
            lun=request.lun,
            initiator_task_tag=request.initiator_task_tag,
            target_transfer_tag=self._ttt,
            data=data,
        )

    def _reset(self) -> None:
        if self._ttt != RESERVED_TAG:
            self._release(self._ttt)
        self._ttt = RESERVED_TAG
        self._pending = []
        self._more = False
        self._request = TextAccumulator()
        self._itt = None
