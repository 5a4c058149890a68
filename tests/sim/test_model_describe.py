"""``describe``: the one line per command in audit logs and timelines, every branch pinned
(the mutation run found only five of its lines checked). What a line says is this project's
own format, not SPC's; the fields it reads are SPC's (6.16.1, 6.17.1, 6.17.3, 6.17.4)."""

from __future__ import annotations

import pytest

from scsi_pr.sim import cdb as C
from scsi_pr.sim.describe import describe
from scsi_pr.sim.transportid import TransportId

TID = TransportId.iscsi("iqn.1993-08.org.debian:01:aa")
MOVE_LENGTH = 24 + len(TID.encode())  # REGISTER AND MOVE parameter list with TID


@pytest.mark.parametrize(
    ("cdb_data", "text"),
    [
        # type= for the service actions that carry one; REGISTER AND MOVE only when set
        (C.prout(0, 1, 2), "PR OUT REGISTER key=0x1 sa_key=0x2"),
        (C.prout(1, 1, 0, 1), "PR OUT RESERVE type=WE key=0x1"),
        (C.prout(2, 1, 0, 3), "PR OUT RELEASE type=EA key=0x1"),
        (C.prout(3, 1), "PR OUT CLEAR key=0x1"),
        (C.prout(4, 1, 2, 6), "PR OUT PREEMPT type=EA-RO key=0x1 sa_key=0x2"),
        (C.prout(5, 1, 2, 7), "PR OUT PREEMPT AND ABORT type=WE-AR key=0x1 sa_key=0x2"),
        (C.prout(6, 1, 2), "PR OUT REGISTER AND IGNORE EXISTING KEY sa_key=0x2"),
        (C.prout(8, 0, 2, 8), "PR OUT REPLACE LOST RESERVATION type=EA-AR key=0x0 sa_key=0x2"),
        (C.prout(1, 1, 0, 2), "PR OUT RESERVE type=0x2 key=0x1"),
        (C.prout(0x1F, 1, 2), "PR OUT SA 0x1f key=0x1 sa_key=0x2"),
        (C.prout(1, 1, 0, 5, scope=2), "PR OUT RESERVE type=WE-RO scope=0x2 key=0x1"),
        (C.prout(0, 0, 2, all_tg_pt=True), "PR OUT REGISTER key=0x0 sa_key=0x2 all_tg_pt"),
        (
            C.prout(0, 0, 2, spec_i_pt=True, transport_ids=[TID]),
            f"PR OUT REGISTER key=0x0 sa_key=0x2 spec_i_pt len={28 + len(TID.encode())}",
        ),
        (
            C.register_and_move(1, 2, 0x102, TID, unreg=True, aptpl=True),
            f"PR OUT REGISTER AND MOVE key=0x1 sa_key=0x2 rtpi=258 unreg aptpl "
            f"len={24 + len(TID.encode())}",
        ),
        (
            C.register_and_move(1, 2, 3, TID, unreg=True),
            f"PR OUT REGISTER AND MOVE key=0x1 sa_key=0x2 rtpi=3 unreg len={MOVE_LENGTH}",
        ),
        (
            C.register_and_move(1, 2, 3, TID, aptpl=True),
            f"PR OUT REGISTER AND MOVE key=0x1 sa_key=0x2 rtpi=3 aptpl len={MOVE_LENGTH}",
        ),
        (
            C.register_and_move(1, 2, 3, TID, 5),
            f"PR OUT REGISTER AND MOVE type=WE-RO key=0x1 sa_key=0x2 rtpi=3 "
            f"len={24 + len(TID.encode())}",
        ),
        (C.prout(1, 1, 0, 5, scope=1), "PR OUT RESERVE type=WE-RO scope=0x1 key=0x1"),
        (
            C.prout(4, 0x8000000000000001, 0x8000000000000002, 5),
            "PR OUT PREEMPT type=WE-RO key=0x8000000000000001 sa_key=0x8000000000000002",
        ),
        (
            (C.persistent_reserve_out(3, 16), bytes([0x80]) + bytes(15)),
            "PR OUT CLEAR key=0x8000000000000000 len=16",
        ),
        (
            (C.persistent_reserve_out(7, 24), bytes(16) + bytes([0, 2, 0x01, 0x02]) + bytes(4)),
            "PR OUT REGISTER AND MOVE key=0x0 sa_key=0x0 rtpi=258 unreg",
        ),
        (
            (C.persistent_reserve_out(3, 0x01000018), bytes(24)),
            f"PR OUT CLEAR key=0x0 len={0x01000018}",
        ),
        # a parameter list too short for the keys, the flags, or REGISTER AND MOVE's fields
        ((C.persistent_reserve_out(3, 24), bytes(15)), "PR OUT CLEAR"),
        ((C.persistent_reserve_out(0, 20), bytes(20)), "PR OUT REGISTER key=0x0 sa_key=0x0 len=20"),
        (
            (C.persistent_reserve_out(0, 21), bytes(20) + b"\x0d"),
            "PR OUT REGISTER key=0x0 sa_key=0x0 spec_i_pt all_tg_pt aptpl len=21",
        ),
        (
            (C.persistent_reserve_out(7, 23), bytes(17) + b"\x03" + bytes(5)),
            "PR OUT REGISTER AND MOVE key=0x0 sa_key=0x0 len=23",
        ),
        ((C.persistent_reserve_in(0, 0x1234), b""), "PR IN READ KEYS alloc=4660"),
        ((C.persistent_reserve_in(1, 8), b""), "PR IN READ RESERVATION alloc=8"),
        ((C.persistent_reserve_in(2), b""), "PR IN REPORT CAPABILITIES alloc=8192"),
        ((C.persistent_reserve_in(0x1E), b""), "PR IN SA 0x1e alloc=8192"),
        ((C.read_10(0x01020304, 0x0506), b""), "READ(10) lba=16909060 blocks=1286"),
        ((C.write_10(7, 1), b""), "WRITE(10) lba=7 blocks=1"),
        ((C.read_16(0x0102030405, 0x060708), b""), "READ(16) lba=4328719365 blocks=395016"),
        ((C.write_16(1 << 40, 9), b""), f"WRITE(16) lba={1 << 40} blocks=9"),
        ((C.read_16(0, 1)[:13], b""), "READ(16)"),  # cut inside TRANSFER LENGTH: the name
        ((C.read_10(1, 2)[:9], b""), "READ(10) lba=1 blocks=2"),  # through TRANSFER LENGTH
        ((C.inquiry(True, 0x83) + bytes(4), b""), "INQUIRY VPD page=0x83"),
        ((C.inquiry() + bytes(4), b""), "INQUIRY"),
        ((C.read_capacity_16(), b""), "READ CAPACITY(16)"),
        ((bytes([0x9E, 0x11]) + bytes(14), b""), "SERVICE ACTION IN(16)"),
        # no describer, or a CDB too short for one: the operation code's name
        ((C.test_unit_ready(), b""), "TEST UNIT READY"),
        ((C.mode_sense_6(), b""), "MODE SENSE(6)"),
        ((C.synchronize_cache_10(), b""), "SYNCHRONIZE CACHE(10)"),
        ((C.inquiry(True, 0x83), b""), "INQUIRY VPD page=0x83"),
        ((C.inquiry(True, 0x80)[:3], b""), "INQUIRY VPD page=0x80"),
        ((bytes([0x12, 0x01]), b""), "INQUIRY"),
        ((bytes([0x9E, 0x10]), b""), "READ CAPACITY(16)"),
        ((bytes([0x9E]), b""), "SERVICE ACTION IN(16)"),
        ((C.read_16(1 << 56, 1 << 24), b""), f"READ(16) lba={1 << 56} blocks={1 << 24}"),
        ((C.read_10(3, 1) + bytes(6), b""), "READ(10) lba=3 blocks=1"),  # padded: still (10)
        ((C.persistent_reserve_out(3, 0)[:9], b""), "PR OUT CLEAR len=0"),
        ((C.read_10(1, 1)[:8], b""), "READ(10)"),
        ((bytes([0x5F, 0]), b""), "PERSISTENT RESERVE OUT"),
        ((bytes([0xFF]) + bytes(5), b""), "OPCODE 0xff (6-byte CDB)"),
        ((bytes([0xC0]) + bytes(11), b""), "OPCODE 0xc0 (12-byte CDB)"),
    ],
)
def test_describe(cdb_data: tuple[bytes, bytes], text: str) -> None:
    assert describe(*cdb_data) == text


def test_describe_takes_any_byte_sequence() -> None:
    cdb, data = C.prout(4, 1, 2, 5)
    assert describe(bytearray(cdb), memoryview(data)) == describe(cdb, data)
