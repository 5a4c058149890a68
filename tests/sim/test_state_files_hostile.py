"""Hand-edited state files: every value is checked for its kind and range where a snapshot or
an APTPL image is restored, and a bad one is a StateFormatError naming the field.

Fuzzing the helper's state files found values ``json`` reads without complaint that crashed
later with a traceback: ``Infinity`` (a float) for the PR generation, a reservation key or the
unit attention epoch (OverflowError in ``int()``), a number for an initiator name (TypeError
formatting the I_T nexus), and keys outside the 8 bytes a RESERVATION KEY has (loaded as they
were). The same values in the APTPL image crashed ``power-cycle``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modeltest import out

from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.helper.lu_state_file import StateFileError
from scsi_pr.helper.sim_cli import main
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.sim.cdb import persistent_reserve_out, pr_out_parameters
from scsi_pr.sim.constants import RESERVATIONS_PREEMPTED, ReservationType, Status
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.state import (
    KEY_RANGE,
    SCOPE_RANGE,
    PersistentReservations,
    StateFormatError,
    bool_field,
    enum_field,
    int_field,
    optional_str_field,
    str_field,
)
from scsi_pr.sim.store import MemoryAptplStore
from scsi_pr.sim.transportid import TransportId
from scsi_pr.sim.unit_attention import UnitAttentions

INF, NAN = float("inf"), float("nan")
I1 = ITNexus(TransportId.iscsi("iqn.2024-01.test:one", 0x23D000000001), 1)
I2 = ITNexus(TransportId.sas(0x5000C50000000002), 2)


def busy_lu(store: MemoryAptplStore | None = None) -> LogicalUnit:
    """Every field a damaged file can reach: two registrations (APTPL on), a reservation, an
    SPC-2-less LU with a reset epoch, a seen epoch and a queued unit attention."""
    lu = LogicalUnit(target_ports=(1, 2), store=store)
    assert out(lu, I1, SA.REGISTER, 0, 0xA, aptpl=True).status == Status.GOOD
    assert out(lu, I2, SA.REGISTER, 0, 0xB, aptpl=True).status == Status.GOOD
    assert out(lu, I1, SA.RESERVE, 0xA, 0, ReservationType.WRITE_EXCLUSIVE).status == 0
    lu.hard_reset()
    lu.ua.pop(I1)
    lu.ua.establish([I2], RESERVATIONS_PREEMPTED)
    return lu


def set_at(doc: Any, path: str, value: object) -> None:
    """Set ``doc``'s value at ``path`` (dotted keys and list indexes: ``a.b.0.c``)."""
    *parents, last = path.split(".")
    for step in parents:
        doc = doc[int(step)] if isinstance(doc, list) else doc[step]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


def damaged(state: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """``state`` with ``value`` at ``path``, through JSON text as a file holds it (``json``
    writes a float infinity as ``Infinity`` and reads it back as a float)."""
    doc = json.loads(json.dumps(state))
    set_at(doc, path, value)
    text = json.dumps(doc)
    return json.loads(text)  # type: ignore[no-any-return]


#: (where in the PR state, the bad value, the field the error names)
PR_DAMAGE = [
    ("generation", INF, "generation"),
    ("generation", NAN, "generation"),
    ("generation", 1 << 32, "generation"),
    ("generation", 1.0, "generation"),
    ("registrations.0.key", INF, "registrations[0].key"),
    ("registrations.1.key", -1, "registrations[1].key"),
    ("registrations.0.key", 1 << 80, "registrations[0].key"),
    ("registrations.0.key", 1 << 64, "registrations[0].key"),
    ("registrations.0.key", True, "registrations[0].key"),
    ("registrations.0.key", "10", "registrations[0].key"),
    ("registrations.0.name", 5, "registrations[0].name"),
    ("registrations.0.isid", 5, "registrations[0].isid"),
    ("registrations.0.protocol", INF, "registrations[0].protocol"),
    ("registrations.0.protocol", 5.0, "registrations[0].protocol"),
    ("registrations.0.target_port", INF, "registrations[0].target_port"),
    ("registrations.0.target_port", 0, "registrations[0].target_port"),
    ("registrations.0.all_tg_pt", "false", "registrations[0].all_tg_pt"),
    ("registrations.0.lio_scope", INF, "registrations[0].lio_scope"),
    ("reservation.type", INF, "reservation.type"),
    ("reservation.scope", INF, "reservation.scope"),
    ("reservation.holder.name", 5, "reservation.holder.name"),
    ("aptpl", 1, "aptpl"),
]

#: (where in the unit attention state, the bad value, the field the error names)
UA_DAMAGE = [
    ("epoch", INF, "epoch"),
    ("epoch", -1, "epoch"),
    ("seen.0.1", INF, "seen[0][1]"),
    ("seen.0.0.name", 5, "seen[0][0].name"),
    ("queues.0.1.0", [INF, 3], "queues[0][1][0]"),
    ("queues.0.1.0", [42.0, 3.0], "queues[0][1][0]"),
    ("epoch_code", [0x29, INF], "epoch_code"),
]


def ids(cases: list[tuple[str, object, str]]) -> list[str]:
    return [f"{path}={value!r}" for path, value, _ in cases]


SNAPSHOT_DAMAGE = [("pr", *case) for case in PR_DAMAGE] + [("ua", *case) for case in UA_DAMAGE]


@pytest.mark.parametrize(
    ("part", "path", "value", "field"),
    SNAPSHOT_DAMAGE,
    ids=[f"{part}.{path}={value!r}" for part, path, value, _ in SNAPSHOT_DAMAGE],
)
def test_a_bad_value_in_a_snapshot_is_a_format_error_naming_the_field(
    part: str, path: str, value: object, field: str
) -> None:
    """PR state and unit attentions alike: the error names the field, and nothing changed."""
    lu = busy_lu()
    before = lu.snapshot()
    with pytest.raises(StateFormatError) as caught:
        lu.restore(damaged(before, f"{part}.{path}", value))
    assert caught.value.field == field
    assert field in str(caught.value)
    assert lu.snapshot() == before  # nothing changed


def test_a_bad_spc2_holder_or_known_nexus_names_its_field() -> None:
    lu = busy_lu()
    snap = lu.snapshot()
    for path in ("spc2_holder", "nexuses.0"):
        nexus = {"protocol": 5, "name": 5, "isid": None, "target_port": 1}
        with pytest.raises(StateFormatError) as caught:
            lu.restore(damaged(snap, path, nexus))
        assert caught.value.field == "name"
        assert "malformed I_T nexus" in str(caught.value)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [case for case in PR_DAMAGE if case[0] != "aptpl"],
    ids=ids([case for case in PR_DAMAGE if case[0] != "aptpl"]),
)
def test_a_bad_value_in_the_aptpl_image_is_a_format_error_at_power_on(
    path: str, value: object, field: str
) -> None:
    """The APTPL image is read at power on (a power cycle) and when an LU is built on it."""
    store = MemoryAptplStore()
    lu = busy_lu(store)
    image = store.load()
    assert image is not None and image["aptpl"] is True
    bad = damaged(image, path, value)
    with pytest.raises(StateFormatError) as caught:
        LogicalUnit(target_ports=(1, 2), store=MemoryAptplStore(bad))
    assert caught.value.field == field
    lu.store = MemoryAptplStore(bad)
    lu.power_loss()
    with pytest.raises(StateFormatError) as caught:
        lu.power_on()
    assert caught.value.field == field and field in str(caught.value)
    assert str(caught.value).startswith("APTPL image: "), caught.value


def test_the_widest_values_the_fields_hold_still_restore() -> None:
    """Only what SPC-5 cannot hold is refused: an all-ones key and generation, the last
    RELATIVE TARGET PORT IDENTIFIER, an absent ISID, all round trip."""
    far = ITNexus(TransportId.sas(0x5000C500000000FF), 0xFFFF)
    lu = LogicalUnit(target_ports=(1, 0xFFFF))
    assert out(lu, far, SA.REGISTER, 0, (1 << 64) - 1).status == Status.GOOD
    snap = damaged(lu.snapshot(), "pr.generation", (1 << 32) - 1)
    back = LogicalUnit(target_ports=(1, 0xFFFF))
    back.restore(snap)
    assert back.snapshot() == snap
    assert back.pr.key_of(far) == (1 << 64) - 1
    pr = PersistentReservations.from_dict({"registrations": snap["pr"]["registrations"]})
    assert pr.registrations[far].key == (1 << 64) - 1


def test_a_structural_fault_is_still_the_format_error() -> None:
    """A list where an object belongs names where it was found; a missing field names it."""
    with pytest.raises(StateFormatError) as caught:
        PersistentReservations.from_dict({"registrations": [[1, 2]]})
    assert caught.value.field == "registrations[0]"
    with pytest.raises(StateFormatError) as caught:
        PersistentReservations.from_dict({"registrations": [{"protocol": 6, "name": "x"}]})
    assert caught.value.field == "registrations[0].target_port"


# -- through the helper's state file, as ``scsi-pr sim`` reads it -----------------------------
def _edit(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda doc: set_at(doc, path, value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        pytest.param(_edit("state.pr.generation", INF), "generation", id="generation"),
        pytest.param(_edit("state.pr.registrations.0.key", INF), "registrations[0].key", id="key"),
        pytest.param(_edit("state.ua.epoch", INF), "epoch", id="ua epoch"),
        pytest.param(_edit("state.pr.registrations.0.name", 5), "registrations[0].name", id="name"),
        pytest.param(_edit("aptpl.registrations.0.key", -1), "registrations[0].key", id="aptpl"),
        pytest.param(
            _edit("aptpl.registrations.0.name", 5), "registrations[0].name", id="aptpl name"
        ),
    ],
)
def test_scsi_pr_sim_names_the_file_and_the_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None],
    field: str,
    request: pytest.FixtureRequest,
) -> None:
    """``show`` and ``power-cycle`` exit 1 with one line naming the file and the field (they
    printed a traceback); the helper's loader raises its StateFileError caused by ours."""
    edit_aptpl = request.node.callspec.id.startswith("aptpl")
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = tmp_path / "state"
    fd = os.open(image, os.O_RDWR)
    try:
        ex = SimExecutor("naa.5001405000000001", state)
        data = pr_out_parameters(0, 9, aptpl=True)
        assert ex.run(fd, persistent_reserve_out(6, 24), data).status == Status.GOOD
    finally:
        os.close(fd)
    doc_path = SharedLUs(state).files(identify_path(image)[0]).state
    doc = json.loads(doc_path.read_bytes())
    edit(doc)
    doc_path.write_text(json.dumps(doc))
    capsys.readouterr()
    for action in ("show", "power-cycle"):
        assert main([action, str(image), "--state-dir", str(state)]) == 1
        err = capsys.readouterr().err
        assert re.fullmatch(r"scsi-pr sim: [^\n]+\n", err), err
        assert str(doc_path) in err and field in err, err
        # which part of the file: the APTPL image or the live state, whose fields share names
        assert ("APTPL image: " in err) == edit_aptpl, err
    with pytest.raises(StateFileError) as caught:
        SharedLUs(state).run_on_file(image, lambda lu: lu)
    cause = caught.value.__cause__
    assert isinstance(cause, StateFormatError) and cause.field == field


@pytest.mark.parametrize(
    ("name", "value"),
    [("powered", "no"), ("powered", 0), ("reservation_lost", "yes"), ("profile", 5)],
)
def test_the_lus_own_fields_are_checked_too(name: str, value: object) -> None:
    """``bool()`` took any string as true and ``str()`` any number as a profile's name."""
    lu = busy_lu()
    before = lu.snapshot()
    with pytest.raises(StateFormatError) as caught:
        lu.restore(damaged(before, name, value))
    assert caught.value.field == name
    assert lu.snapshot() == before
    lu.restore(damaged(before, "powered", False))  # a real boolean still loads
    assert lu.powered is False


@pytest.mark.parametrize(
    "read",
    [
        lambda d, where: bool_field(d, "all_tg_pt", False, where=where),
        lambda d, where: int_field(d, "key", KEY_RANGE, where=where),
        lambda d, where: str_field(d, "name", where=where),
        lambda d, where: optional_str_field(d, "isid", where=where),
    ],
    ids=["bool", "int", "str", "optional str"],
)
def test_each_reader_names_where_a_value_that_is_no_object_was(
    read: Callable[[object, str], object],
) -> None:
    """A registration that is a number, not an object, is named by its place in the list, by
    whichever reader meets it first (today the key's; the readers may be reordered)."""
    with pytest.raises(StateFormatError) as caught:
        read(5, "registrations[1]")
    assert caught.value.field == "registrations[1]"
    assert str(caught.value) == "registrations[1]: 5 is not an object"
    with pytest.raises(StateFormatError) as caught:
        read([], "")
    assert caught.value.field is None and str(caught.value) == "the state: [] is not an object"


# -- the exact errors: a person reads them to mend the file -----------------------------------
SAS_NEXUS = {"protocol": 6, "name": "naa.5000c50000000002", "isid": None, "target_port": 2}


PR, NEXUS = "PR state", "I_T nexus"


@pytest.mark.parametrize(
    ("state", "field", "what", "message"),
    [
        ([], None, PR, "the state: [] is not an object"),
        ({"registrations": [{}]}, "registrations[0].protocol", NEXUS, "[0].protocol: missing"),
        ({"registrations": [SAS_NEXUS]}, "registrations[0].key", PR, "[0].key: missing"),
        (
            {"registrations": [{**SAS_NEXUS, "key": -1}]},
            "registrations[0].key",
            PR,
            "[0].key: -1 is not an integer in 0..18446744073709551615",
        ),
        (
            {"registrations": [{**SAS_NEXUS, "name": 5, "key": 1}]},
            "registrations[0].name",
            NEXUS,
            "[0].name: 5 is not a string",
        ),
        (
            {"registrations": [{**SAS_NEXUS, "isid": 5, "key": 1}]},
            "registrations[0].isid",
            NEXUS,
            "[0].isid: 5 is not a string",
        ),
        ({"reservation": {}}, "reservation.holder", PR, "reservation.holder: missing"),
        (
            {"generation": 1 << 32},
            "generation",
            PR,
            "generation: 4294967296 is not an integer in 0..4294967295",
        ),
    ],
)
def test_each_pr_state_error_names_its_field_exactly(
    state: object, field: str | None, what: str, message: str
) -> None:
    """A required key that is absent is "missing" (not "None is not an integer"); a bound is
    the field's last valid value; ``what`` is the innermost part being read."""
    with pytest.raises(StateFormatError) as caught:
        PersistentReservations.from_dict(state)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.what == what
    text = f"malformed {what}: " + ("registrations" if message.startswith("[") else "") + message
    assert str(caught.value) == text


def test_an_aptpl_image_error_keeps_its_field_and_part() -> None:
    lu = LogicalUnit()
    lu.store = MemoryAptplStore({"aptpl": True, "generation": -1})
    lu.power_loss()
    with pytest.raises(StateFormatError) as caught:
        lu.power_on()
    assert (caught.value.field, caught.value.what) == ("generation", "PR state")
    assert str(caught.value).startswith("APTPL image: malformed PR state: generation: -1 ")


@pytest.mark.parametrize(
    ("ua", "field", "message"),
    [
        ({"epoch_code": "ab"}, "epoch_code", "epoch_code: 'ab' is not a unit attention condition"),
        ({"epoch_code": [41, 1, 0]}, "epoch_code", "is not a unit attention condition"),
        ({"epoch_code": [255, 255]}, "epoch_code", "epoch_code: [255, 255] is not a unit"),
        (
            {"queues": [[{**SAS_NEXUS, "name": 5}, []]]},
            "queues[0][0].name",
            "queues[0][0].name: 5 is not a string",
        ),
        (
            {"queues": [[SAS_NEXUS, [[41, 1], "ab"]]]},
            "queues[0][1][1]",
            "queues[0][1][1]: 'ab' is not a unit attention condition",
        ),
        (
            {"seen": [[{**SAS_NEXUS, "target_port": 0}, 1]]},
            "seen[0][0].target_port",
            "seen[0][0].target_port: 0 is not an integer in 1..65535",
        ),
    ],
)
def test_each_unit_attention_state_error_names_its_field(
    ua: dict[str, Any], field: str, message: str
) -> None:
    """A two-character string is no [ASC, ASCQ] pair (it has a length of 2, as a pair has)."""
    with pytest.raises(StateFormatError) as caught:
        UnitAttentions.from_dict(ua)
    assert caught.value.field == field
    assert message in str(caught.value), caught.value


@pytest.mark.parametrize(
    "read",
    [
        lambda d: enum_field(d, "type", ReservationType),
        lambda d: optional_str_field(d, "type"),
        lambda d: str_field(d, "type"),
        lambda d: bool_field(d, "type", False),
        lambda d: int_field(d, "type", SCOPE_RANGE),
    ],
    ids=["enum", "optional str", "str", "bool", "int"],
)
def test_a_field_at_the_top_names_itself_alone(read: Callable[[object], object]) -> None:
    """Without ``where`` a reader is at the top of what is read: the field is its bare name."""
    with pytest.raises(StateFormatError) as caught:
        read({"type": 1.5})
    assert caught.value.field == "type" and str(caught.value).startswith("type: 1.5 is not ")
