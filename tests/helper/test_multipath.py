"""The multipath executor's pure parts: the C helper's validation of PR commands for
libmpathpersist, result mapping and PR IN re-serialisation (device-mapper: test_executors_dm.py;
the library's structs: test_mpath_lib.py; against a real map: tests/vm/test_multipath_vm.py)."""

from __future__ import annotations

import pytest

from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.executors.multipath import (
    MPATH_PR_ILLEGAL_REQ,
    MPATH_PR_NO_SENSE,
    MPATH_PR_OTHER,
    MPATH_PR_RESERV_CONFLICT,
    MPATH_PR_SENSE_ABORTED_COMMAND,
    MPATH_PR_SENSE_HARDWARE_ERROR,
    MPATH_PR_SENSE_INVALID_OP,
    MPATH_PR_SENSE_MEDIUM_ERROR,
    MPATH_PR_SENSE_NOT_READY,
    MPATH_PR_SENSE_UNIT_ATTENTION,
    MPATH_PR_SUCCESS,
    ProutParams,
    reply_for_result,
    reserialise_pr_in,
    validate_pr_in,
    validate_pr_out,
)
from scsi_pr.helper.executors.status import SenseCode
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters


@pytest.mark.parametrize(
    ("sa", "ok"), [(0, True), (1, True), (2, True), (3, True), (4, False), (0x20, False)]
)
def test_pr_in_service_actions(sa: int, ok: bool) -> None:
    cdb = bytearray(persistent_reserve_in(0, 8192).ljust(16, b"\0"))
    cdb[1] = sa  # the whole byte: reserved bits set are refused as the C helper does
    bad = validate_pr_in(bytes(cdb))
    assert (bad is None) is ok
    if not ok:
        assert (bad.key, bad.asc, bad.ascq) == (5, 0x24, 0)  # type: ignore[union-attr]


def prout(sa: int, param: bytes, type_: int = 0) -> ProutParams | SenseCode:
    return validate_pr_out(persistent_reserve_out(sa, len(param), type_).ljust(16, b"\0"), param)


def triple(code: object) -> tuple[int, int, int]:
    assert isinstance(code, SenseCode), code
    return code.key, code.asc, code.ascq


ISCSI_NAME = b"iqn.2020-01.example:node1\0\0\0"  # 28 bytes, NUL-terminated, multiple of 4


def iscsi_tid(name: bytes = ISCSI_NAME, length: int | None = None) -> bytes:
    n = len(name) if length is None else length
    return bytes([0x05, 0]) + n.to_bytes(2, "big") + name


def with_tids(*tids: bytes, declared: int | None = None) -> bytes:
    body = b"".join(tids)
    n = len(body) if declared is None else declared
    return pr_out_parameters(1, 2)[:24] + n.to_bytes(4, "big") + body


@pytest.mark.parametrize(
    ("sa", "param", "code"),
    [
        (0, bytes(23), (5, 0x1A, 0)),  # length checked before the service action
        (7, bytes(23), (5, 0x1A, 0)),
        (7, bytes(24), (5, 0x24, 0)),  # REGISTER AND MOVE: not the library's (the executor
        # sends it down the paths itself)
        (8, bytes(24), (5, 0x24, 0)),
        (0, bytes(26), (5, 0x1A, 0)),  # >24 but no room for the TransportID list length
        (0, with_tids(declared=8), (5, 0x26, 0)),  # list longer than the data
        (0, with_tids(b"\x01" + bytes(23)), (5, 0x26, 0)),  # SCSI parallel: unsupported
        (0, with_tids(b"\x00" + bytes(15)), (5, 0x26, 0)),  # FC needs 24 bytes
        (0, with_tids(iscsi_tid(b"a" * 28)), (5, 0x26, 0)),  # no NUL in the name
        (0, with_tids(iscsi_tid(ISCSI_NAME[:27], 27)), (5, 0x26, 0)),  # not a multiple of 4
        (0, with_tids(iscsi_tid(bytes(256), 256)), (5, 0x26, 0)),  # longer than 252
    ],
)
def test_pr_out_refusals(sa: int, param: bytes, code: tuple[int, int, int]) -> None:
    assert triple(prout(sa, param)) == code


def test_pr_out_parsed_fields() -> None:
    fc = b"\x00" + bytes(7) + bytes(range(8)) + bytes(8)
    sas = b"\x06" + bytes(3) + bytes(range(8, 16)) + bytes(12)
    param = bytearray(with_tids(fc, iscsi_tid(), sas))
    param[20] = 0x0D  # SPEC_I_PT | ALL_TG_PT | APTPL
    cdb = persistent_reserve_out(0, len(param), 5).ljust(16, b"\0")
    got = validate_pr_out(cdb, bytes(param))
    assert isinstance(got, ProutParams)
    assert (got.service_action, got.scope, got.type, got.flags) == (0, 0, 5, 0x0D)
    assert got.key == (1).to_bytes(8, "big") and got.sa_key == (2).to_bytes(8, "big")
    assert got.transport_ids == [fc, iscsi_tid(), sas]


def test_more_transport_ids_than_the_library_holds_are_refused() -> None:
    sas = b"\x06" + bytes(23)
    assert isinstance(prout(0, with_tids(*[sas] * 32)), ProutParams)
    assert triple(prout(0, with_tids(*[sas] * 33))) == (5, 0x26, 0)


def _tur(reply: Reply) -> tuple[list[int], object]:
    calls: list[int] = []

    def probe() -> Reply:
        calls.append(1)
        return reply

    return calls, probe


@pytest.mark.parametrize(
    ("code", "status", "sense"),
    [
        (MPATH_PR_SUCCESS, 0x00, None),
        (MPATH_PR_RESERV_CONFLICT, 0x18, None),
        (MPATH_PR_SENSE_UNIT_ATTENTION, 0x02, (6, 0x29, 0x02)),
        (MPATH_PR_SENSE_INVALID_OP, 0x02, (5, 0x20, 0)),
        (MPATH_PR_ILLEGAL_REQ, 0x02, (5, 0x26, 0)),
        (MPATH_PR_NO_SENSE, 0x02, (0, 0, 0)),
        (MPATH_PR_OTHER, 0x02, (0x0B, 0x08, 0)),
        (99, 0x02, (0x0B, 0x08, 0)),
        (MPATH_PR_SENSE_NOT_READY, 0x02, (2, 0x04, 0)),
        (MPATH_PR_SENSE_MEDIUM_ERROR, 0x02, (3, 0x11, 0)),
        (MPATH_PR_SENSE_HARDWARE_ERROR, 0x02, (4, 0x44, 0)),
        (MPATH_PR_SENSE_ABORTED_COMMAND, 0x02, (0x0B, 0x00, 0x06)),
    ],
)
def test_result_mapping(code: int, status: int, sense: tuple[int, int, int] | None) -> None:
    calls, probe = _tur(Reply(0))
    reply = reply_for_result(code, probe)  # type: ignore[arg-type]
    assert reply.status == status
    if sense is not None:
        assert (reply.sense[0], reply.sense[2], reply.sense[12], reply.sense[13]) == (0x70, *sense)
    swallowed = code in (2, 3, 4, 8)
    assert calls == ([1] if swallowed else [])


def test_swallowed_sense_uses_the_test_unit_ready_answer_when_not_good() -> None:
    device = Reply(0x02, bytes([0x70, 0, 0x06, 0, 0, 0, 0, 0x0A]) + bytes(4) + b"\x2a\x03")
    _, probe = _tur(device)
    assert reply_for_result(MPATH_PR_SENSE_NOT_READY, probe) == device  # type: ignore[arg-type]


def test_reserialise_keeps_the_datas_own_length_cut_to_the_allocation_length() -> None:
    data = bytes(range(24))
    assert reserialise_pr_in(data, 64) == data  # no zero-fill: the device's length
    assert reserialise_pr_in(data, 12) == data[:12]
