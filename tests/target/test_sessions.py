"""The target's session table, without sockets: TSIHs, reinstatement, and what a session
is called in the log."""

from __future__ import annotations

import pytest

from scsi_pr.target import sessions as S
from scsi_pr.target.proto import SessionParameters
from scsi_pr.target.sessions import Session, SessionTable, nexus_of

HOST = "iqn.2024-01.test:Host-A"


class Owner:
    def end(self, reason: str, *, loss: bool = True) -> None:
        raise AssertionError("the table never ends a session itself")


def _session(tsih: int, isid: int = 1, *, discovery: bool = False, name: str = HOST) -> Session:
    params = SessionParameters(initiator_name=name, isid=isid, tsih=tsih,
                               session_type="Discovery" if discovery else "Normal")  # fmt: skip
    return Session(params, nexus_of(params, 1), Owner(), "127.0.0.1:4000")


def test_tsihs_are_unique_among_connections_and_reused_once_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 7143 11.12.6: a TSIH no connection holds; after the largest the count wraps to 1
    (0 is never one) and skips those still held; a released one is free again."""
    monkeypatch.setattr(S, "MAX_TSIH", 4)
    table = SessionTable()
    assert [table.reserve_tsih() for _ in range(3)] == [1, 2, 3]
    table.release_tsih(2)
    assert [table.reserve_tsih(), table.reserve_tsih()] == [4, 2]
    with pytest.raises(S.NoTsihLeft, match=r"^every TSIH is in use$"):
        table.reserve_tsih()
    table.release_tsih(3)
    assert table.reserve_tsih() == 3


def test_a_released_tsih_ends_its_live_session_entry() -> None:
    table = SessionTable()
    tsih = table.reserve_tsih()
    table.add(_session(tsih))
    other = table.reserve_tsih()
    table.add(_session(other, isid=2))
    table.release_tsih(tsih)
    assert list(table.live) == [other] and len(table) == 1


def test_a_login_with_a_live_session_s_name_and_isid_reinstates_it() -> None:
    """RFC 7143 6.3.5: the same initiator name (case-insensitive) and ISID; another ISID is
    another session; a discovery session reinstates nothing and is never reinstated."""
    table = SessionTable()
    old = _session(1)
    assert table.add(old) is None
    assert table.add(_session(2, isid=2)) is None
    assert table.add(_session(3, name=HOST.upper())) is old
    assert table.add(_session(4, discovery=True)) is None
    assert table.add(_session(5, isid=4, discovery=True)) is None
    assert table.add(_session(6, isid=4)) is None  # the discovery session is no nexus


def test_removing_a_session_leaves_another_on_its_tsih() -> None:
    table = SessionTable()
    first, second = _session(7), _session(7, isid=2)
    table.add(first)
    table.add(second)  # its TSIH reused (first's connection is gone)
    table.remove(first)
    assert table.live == {7: second}
    table.remove(second)
    assert table.live == {} and list(table) == []


def test_a_session_names_its_initiator_port_or_says_discovery() -> None:
    assert str(_session(3, isid=0x23D000000001)) == (
        f"{HOST.lower()},i,0x23d000000001 TSIH 3 from 127.0.0.1:4000"  # names compare lower
    )
    assert str(_session(4, discovery=True)) == "discovery TSIH 4 from 127.0.0.1:4000"


@pytest.mark.parametrize("port", [1, 2, 0xFFFF])
def test_a_sessions_nexus_is_its_initiator_port_through_the_configured_target_port(
    port: int,
) -> None:
    params = SessionParameters(initiator_name=HOST, isid=0x23D000001, tsih=1,
                               session_type="Normal")  # fmt: skip
    nexus = nexus_of(params, port)
    assert nexus is not None and nexus.target_port == port
    assert str(nexus.initiator) == f"{HOST.lower()},i,0x00023d000001"  # names compare lowercased
