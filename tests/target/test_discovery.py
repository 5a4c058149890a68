"""SendTargets (RFC 7143 Appendix C) and Text exchanges split over several responses."""

from __future__ import annotations

from itertools import count

import pytest

from scsi_pr.target.proto import TextRequest
from scsi_pr.target.proto.constants import RESERVED_TAG
from scsi_pr.target.proto.discovery import Portal, TextExchange, TextExchangeError, send_targets
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.login import TargetNode
from scsi_pr.target.proto.text import Pairs, build_text

DISK0, DISK1, SECRET = "iqn.2024-01.test:disk0", "iqn.2024-01.test:disk1", "iqn.2024-01.test:s"
TARGETS = (TargetNode(DISK0), TargetNode(DISK1),
           TargetNode(SECRET, allowed_initiators=frozenset({"iqn.other"})))  # fmt: skip
PORTALS = (Portal("192.0.2.1"), Portal("2001:db8::1", 3261, 2))


def test_portal_addresses() -> None:
    assert [p.address for p in PORTALS] == ["192.0.2.1:3260,1", "[2001:db8::1]:3261,2"]
    with pytest.raises(ValueError):
        Portal("host", 0)


def addresses(name: str) -> list[tuple[str, str]]:
    return [("TargetName", name), ("TargetAddress", "192.0.2.1:3260,1"),
            ("TargetAddress", "[2001:db8::1]:3261,2")]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "discovery", "answer"),
    [
        ("All", True, addresses(DISK0) + addresses(DISK1)),  # SECRET hidden by its ACL
        ("All", False, [("SendTargets", "Reject")]),
        ("", False, addresses(DISK1)),  # the session's own target
        ("", True, [("SendTargets", "Reject")]),
        (DISK0, False, addresses(DISK0)),
        (SECRET, True, []),  # not visible: nothing
        ("iqn.unknown", True, []),
    ],
)
def test_send_targets(value: str, discovery: bool, answer: list[tuple[str, str]]) -> None:
    assert send_targets(value, targets=TARGETS, portals=PORTALS, initiator_name="iqn.me",
                        session_target=None if discovery else DISK1,
                        discovery=discovery) == answer  # fmt: skip


def answer(pairs: Pairs) -> list[tuple[str, str]]:
    value = dict(pairs)["SendTargets"]
    return send_targets(value, targets=TARGETS, portals=PORTALS, initiator_name="iqn.me",
                        session_target=None, discovery=True)  # fmt: skip


class Tags:
    def __init__(self) -> None:
        self._counter = count(50)
        self.released: list[int] = []

    def allocate(self) -> int:
        return next(self._counter)


def exchange() -> tuple[TextExchange, Tags]:
    tags = Tags()
    return TextExchange(answer, tags.allocate, tags.released.append), tags


def request(data: bytes = b"", ttt: int = RESERVED_TAG, itt: int = 1, **kw: bool) -> TextRequest:
    return TextRequest(initiator_task_tag=itt, target_transfer_tag=ttt, data=data, **kw)


def test_short_answer_in_one_response() -> None:
    text, _ = exchange()
    response = text.receive(request(b"SendTargets=All\0"), 8192)
    assert (response.final, response.continues, response.target_transfer_tag) == (
        True, False, RESERVED_TAG)  # fmt: skip
    assert response.data == build_text(addresses(DISK0) + addresses(DISK1))


def test_long_answer_is_fetched_part_by_part() -> None:
    text, tags = exchange()
    whole = build_text(addresses(DISK0) + addresses(DISK1))
    first = text.receive(request(b"SendTargets=All\0"), 64)
    assert (first.final, first.target_transfer_tag, len(first.data)) == (False, 50, 64)
    assert first.continues  # 64 bytes end inside a pair
    parts = [first.data]
    ttt = first.target_transfer_tag
    while True:
        response = text.receive(request(ttt=ttt), 64)
        parts.append(response.data)
        if response.final:
            break
        ttt = response.target_transfer_tag
    assert response.target_transfer_tag == RESERVED_TAG and not response.continues
    assert b"".join(parts) == whole
    assert tags.released == list(range(50, 50 + len(parts) - 1))  # every TTT given back


def test_continuation_must_echo_the_ttt_without_data() -> None:
    text, _ = exchange()
    text.receive(request(b"SendTargets=All\0"), 64)
    with pytest.raises(TextExchangeError):
        text.receive(request(ttt=77), 64)
    with pytest.raises(TextExchangeError):
        text.receive(request(b"A=1\0", ttt=50), 64)


def test_a_new_itt_abandons_the_old_exchange() -> None:
    text, tags = exchange()
    text.receive(request(b"SendTargets=All\0"), 64)
    response = text.receive(request(b"SendTargets=" + DISK0.encode() + b"\0", itt=2), 8192)
    assert response.final and tags.released == [50]
    assert response.data == build_text(addresses(DISK0))  # a fresh answer


def test_request_split_with_the_c_bit() -> None:
    text, _ = exchange()
    first = text.receive(request(b"SendTar", continues=True, final=False), 8192)
    assert (first.data, first.final) == (b"", False)
    second = text.receive(request(b"gets=All\0"), 8192)
    assert second.final and second.data.startswith(b"TargetName=" + DISK0.encode())


def test_stale_ttt_without_exchange_is_refused() -> None:
    text, _ = exchange()
    with pytest.raises(TextExchangeError) as caught:
        text.receive(request(ttt=5), 8192)
    assert not caught.value.close_connection


def test_continuation_requests_and_the_initiators_own_continuation() -> None:
    """C=1 is acknowledged by an empty response with C=0 and F=0 (11.10.2); a request with
    F=0 (the initiator has more to say) gets an answer with F=0 and a TTT (11.10.1); each
    response echoes the request's LUN."""
    text, _ = exchange()
    ack = text.receive(request(b"SendTar", continues=True, final=False), 8192)
    assert (ack.final, ack.continues, ack.data) == (False, False, b"")
    more = text.receive(request(b"gets=All\0", final=False), 8192)
    assert not more.final and more.target_transfer_tag == 50
    text, _ = exchange()
    echoed = text.receive(TextRequest(lun=7 << 48, initiator_task_tag=4,
                                      data=b"SendTargets=All\0"), 8192)  # fmt: skip
    assert (echoed.lun, echoed.initiator_task_tag) == (7 << 48, 4)


def test_exchange_errors_say_why() -> None:
    text, _ = exchange()
    with pytest.raises(TextExchangeError, match=r"^TTT 0x5 names no exchange$"):
        text.receive(request(ttt=5), 8192)
    text.receive(request(b"SendTargets=All\0"), 64)
    with pytest.raises(TextExchangeError, match=r"^a continuation must echo the TTT with no data$"):
        text.receive(request(ttt=77), 64)


def test_an_empty_send_targets_value_in_a_discovery_session_is_rejected() -> None:
    """Appendix C: the empty value names the session's own target, which a discovery session
    has not (whatever the caller says its target is)."""
    answer = send_targets("", targets=TARGETS, portals=PORTALS, initiator_name="iqn.me",
                          session_target=DISK0, discovery=True)  # fmt: skip
    assert answer == [("SendTargets", "Reject")]


@pytest.mark.parametrize(
    ("host", "port", "tag"),
    [("", 3260, 1), ("h", 0, 1), ("h", 65536, 1), ("h", 3260, -1), ("h", 3260, 0x10000)],
)
def test_bad_portals(host: str, port: int, tag: int) -> None:
    with pytest.raises(LocalProtocolError, match=rf"^bad portal {host!r}:{port},{tag}$"):
        Portal(host, port, tag)


def test_portal_bounds_are_inclusive() -> None:
    assert Portal("h", 1, 0).address == "h:1,0"
    assert Portal("h", 65535, 0xFFFF).address == "h:65535,65535"
