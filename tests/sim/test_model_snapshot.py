"""Snapshots (``LogicalUnit.snapshot``/``restore``) and the PR and unit-attention state they
carry: every field survives the round trip, the format's key names are pinned (processes sharing
an LU read each other's snapshots, and the helper keeps them in files), a snapshot that leaves a
field out gets that field's documented default, and a malformed one names what was being read.

The existing round trip covered a state without reset epochs, SPC-2 holder, power or lost
reservations; the mutation run found those fields unpinned."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modeltest import out

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import (
    POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
    RESERVATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    ReservationType,
    Status,
)
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.state import PersistentReservations, StateFormatError
from scsi_pr.sim.transportid import TransportId
from scsi_pr.sim.unit_attention import UnitAttentions

T = ReservationType
A, B, K = 0xA, 0xB, 0xC
I1 = ITNexus(TransportId.iscsi("iqn.2024-01.test:one", 0x23D000000001), 1)
I2 = ITNexus(TransportId.iscsi("iqn.2024-01.test:two"), 2)
I3 = ITNexus(TransportId.sas(0x5000C50000000003), 1)
I4 = ITNexus(TransportId.fibre_channel(0x2100002400000004), 2)


def rich_lu() -> LogicalUnit:
    """Most kinds of state at once: keys with and without ALL_TG_PT, a WE-RO reservation held by
    I1, APTPL set then cleared by a later REGISTER, a reset epoch I3 has seen and I4 has not,
    UAs queued in order, the power off. (An SPC-2 holder and lost PR information cannot coexist
    with registrations; the next test has them.)"""
    lu = LogicalUnit(target_ports=(1, 2))
    assert out(lu, I1, 0, 0, A, aptpl=True).status == Status.GOOD
    assert out(lu, I2, 0, 0, B, all_tg_pt=True).status == Status.GOOD
    assert out(lu, I3, 0, 0, K).status == Status.GOOD
    assert out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY).status == Status.GOOD
    lu.hard_reset()
    assert lu.execute(I3, C.test_unit_ready()).status == Status.CHECK_CONDITION  # I3 saw it
    lu.ua.establish([I3], RESERVATIONS_RELEASED)
    lu.ua.establish([I3], RESERVATIONS_PREEMPTED)
    lu.powered = False
    return lu


def round_trip(lu: LogicalUnit) -> LogicalUnit:
    return LogicalUnit.from_snapshot(json.loads(json.dumps(lu.snapshot())), target_ports=(1, 2))


def test_every_field_survives_the_round_trip() -> None:
    lu = rich_lu()
    copy = round_trip(lu)
    assert copy.snapshot() == lu.snapshot()
    assert copy.pr == lu.pr
    assert (copy.powered, copy.reservation_lost, copy.spc2_holder) == (False, False, None)
    copy.powered = lu.powered = True
    for nexus in (I1, I2, I3, I4):
        assert copy.ua.peek_all(nexus) == lu.ua.peek_all(nexus)
    assert copy.ua.peek_all(I3) == [RESERVATIONS_RELEASED, RESERVATIONS_PREEMPTED]
    assert copy.ua.peek_all(I4) == [POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED]


def test_lost_reservations_and_the_spc2_holder_survive() -> None:
    lu = LogicalUnit(target_ports=(1, 2))
    assert lu.execute(I4, C.reserve_6()).status == Status.GOOD
    copy = round_trip(lu)
    assert copy.spc2_holder == I4
    assert copy.execute(I1, C.read_10(0, 1)).status == Status.RESERVATION_CONFLICT
    lu = LogicalUnit(target_ports=(1, 2))
    lu.lose_reservations()
    copy = round_trip(lu)
    assert copy.reservation_lost
    assert copy.execute(I1, C.read_10(0, 1)).sense[12:14] == bytes([0x44, 0x01])


def test_pr_state_format() -> None:
    pr = rich_lu().pr
    assert pr.to_dict() == {
        "generation": 3,  # three REGISTERs; RESERVE does not count (SPC-5 6.16.2)
        "aptpl": False,
        "registrations": [
            {
                "protocol": 5,
                "name": "iqn.2024-01.test:one",
                "isid": "23d000000001",
                "target_port": 1,
                "key": A,
                "all_tg_pt": False,
            },
            {
                "protocol": 5,
                "name": "iqn.2024-01.test:two",
                "isid": None,
                "target_port": 1,
                "key": B,
                "all_tg_pt": True,
            },
            {
                "protocol": 5,
                "name": "iqn.2024-01.test:two",
                "isid": None,
                "target_port": 2,
                "key": B,
                "all_tg_pt": True,
            },
            {
                "protocol": 6,
                "name": "naa.5000c50000000003",
                "isid": None,
                "target_port": 1,
                "key": K,
                "all_tg_pt": False,
            },
        ],
        "reservation": {
            "holder": {
                "protocol": 5,
                "name": "iqn.2024-01.test:one",
                "isid": "23d000000001",
                "target_port": 1,
            },
            "type": 5,
            "scope": 0,
        },
    }


def test_unit_attention_state_format() -> None:
    lu = rich_lu()
    i3 = {"protocol": 6, "name": "naa.5000c50000000003", "isid": None, "target_port": 1}
    assert lu.ua.to_dict() == {
        "epoch": 1,
        "epoch_code": [0x29, 0x00],
        "seen": [[i3, 1]],
        "queues": [[i3, [[0x2A, 0x04], [0x2A, 0x03]]]],
    }
    assert UnitAttentions().to_dict() == {"epoch": 0, "epoch_code": None, "seen": [], "queues": []}


def test_snapshot_names_its_fields() -> None:
    lu = rich_lu()
    snap = lu.snapshot()
    assert snap["pr"] == lu.pr.to_dict() and snap["ua"] == lu.ua.to_dict()
    assert (snap["spc2_holder"], snap["powered"], snap["reservation_lost"]) == (None, False, False)
    assert LogicalUnit().snapshot()["reservation_lost"] is False  # before any PR OUT too
    lu = LogicalUnit()
    assert lu.execute(I3, C.reserve_6()).status == Status.GOOD
    lu.lose_reservations()
    snap = lu.snapshot()
    assert snap["spc2_holder"] == {
        "protocol": 6,
        "name": "naa.5000c50000000003",
        "isid": None,
        "target_port": 1,
    }
    assert (snap["powered"], snap["reservation_lost"]) == (True, True)


def test_fields_left_out_take_their_defaults() -> None:
    """An older writer's snapshot without ``powered``/``reservation_lost``/``spc2_holder``, PR
    state without generation/APTPL/ALL_TG_PT, UA state without epochs: a powered LU with
    nothing lost, generation 0, APTPL and ALL_TG_PT off, no reset pending."""
    lu = LogicalUnit(target_ports=(1, 2))
    lu.powered, lu.reservation_lost = False, True
    lu.restore({"pr": {}, "ua": {}})
    assert (lu.powered, lu.reservation_lost, lu.spc2_holder) == (True, False, None)
    assert lu.pr == PersistentReservations()
    assert lu.ua.to_dict() == UnitAttentions().to_dict()
    assert lu.execute(I1, C.test_unit_ready()).status == Status.GOOD
    nexus = {"protocol": 5, "name": "iqn.2024-01.test:two", "target_port": 2}
    pr = PersistentReservations.from_dict({"registrations": [{**nexus, "key": 7}]})
    assert (pr.generation, pr.aptpl, pr.reservation) == (0, False, None)
    assert [(r.nexus, r.key, r.all_tg_pt) for r in pr.registrations.values()] == [(I2, 7, False)]


@pytest.mark.parametrize(
    ("snapshot", "what"),
    [
        ({"ua": {}}, "LU snapshot"),
        ({"pr": {"registrations": [{"protocol": 5}]}, "ua": {}}, "I_T nexus"),
        ({"pr": {"reservation": {"holder": None, "type": 2, "scope": 0}}, "ua": {}}, "PR state"),
        ({"pr": {}, "ua": {"epoch_code": [0x99, 0x99]}}, "unit attention state"),
    ],
)
def test_malformed_snapshot_names_what_was_read(snapshot: dict[str, Any], what: str) -> None:
    with pytest.raises(StateFormatError, match=f"malformed {what}"):
        LogicalUnit().restore(snapshot)


def test_nexus_loss_drops_that_nexus_queued_conditions_only() -> None:
    """SAM-5 6.3.4: the I_T nexus loss UA replaces what was queued for that nexus; other
    nexuses keep theirs."""
    lu = LogicalUnit(target_ports=(1, 2))
    lu.ua.establish([I1, I2], RESERVATIONS_PREEMPTED)
    lu.nexus_loss(I1)
    assert [(c.asc, c.ascq) for c in lu.ua.peek_all(I1)] == [(0x29, 0x07)]
    assert lu.ua.peek_all(I2) == [RESERVATIONS_PREEMPTED]


def test_unit_attentions_report_in_order_and_the_reset_first() -> None:
    ua = UnitAttentions()
    ua.establish([I1], RESERVATIONS_RELEASED)
    ua.establish([I1], RESERVATIONS_PREEMPTED)
    ua.establish([I1], RESERVATIONS_RELEASED)  # already queued: not twice
    assert ua.peek_all(I1) == [RESERVATIONS_RELEASED, RESERVATIONS_PREEMPTED]
    ua.establish_for_all(POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)
    ua.establish([I1], RESERVATIONS_RELEASED)
    assert ua.peek_all(I1) == [POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED, RESERVATIONS_RELEASED]
    assert ua.pop(I1) == POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED
    assert ua.peek_all(I1) == [RESERVATIONS_RELEASED]
    assert ua.peek_all(I2) == [POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED]
    ua.establish_for_all(POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)  # a second reset
    assert ua.to_dict()["epoch"] == 2
    assert ua.peek_all(I1) == [POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED]
    ua.clear(I1)
    assert ua.peek_all(I1) == [] and not ua.pending(I1)
    assert ua.pending(I2)


def test_key_of() -> None:
    lu = rich_lu()
    assert (lu.pr.key_of(I1), lu.pr.key_of(I2), lu.pr.key_of(I4)) == (A, B, None)


def test_the_nexuses_an_lu_knows() -> None:
    """Attached, or seen in a command (not one through a target port the LU lacks); a
    snapshot lists them in one order, a restore replaces them, an older snapshot has none."""
    lu = LogicalUnit(target_ports=(1, 2))
    assert lu.snapshot()["nexuses"] == []
    lu.attach(I2)
    assert lu.execute(I3, C.test_unit_ready()).status == Status.GOOD
    assert lu.execute(ITNexus(I1.initiator, 3), C.test_unit_ready()).status != Status.GOOD
    assert lu.nexuses == {I2, I3}
    two = {"protocol": 5, "name": "iqn.2024-01.test:two", "isid": None, "target_port": 2}
    three = {"protocol": 6, "name": "naa.5000c50000000003", "isid": None, "target_port": 1}
    snap = lu.snapshot()
    assert snap["nexuses"] == [two, three]
    assert LogicalUnit.from_snapshot(json.loads(json.dumps(snap))).nexuses == {I2, I3}
    lu.restore({**snap, "nexuses": [three]})
    assert lu.nexuses == {I3}
    lu.restore({"pr": {}, "ua": {}})
    assert lu.nexuses == set()
    with pytest.raises(StateFormatError, match="malformed I_T nexus"):
        lu.restore({"pr": {}, "ua": {}, "nexuses": [{"protocol": 6}]})


def test_a_snapshot_lists_an_isid_less_nexus_before_its_ports() -> None:
    """The order is total even where one name has ports with and without an ISID."""
    lu = LogicalUnit(target_ports=(1, 2))
    device = ITNexus(TransportId.iscsi("iqn.2024-01.test:one"), 1)
    lu.attach(I1)
    lu.attach(device)
    assert [n["isid"] for n in lu.snapshot()["nexuses"]] == [None, "23d000000001"]
