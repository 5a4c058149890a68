"""``helper.executors.block_pr`` called directly: the exact ioctl (number, packed argument, name)
or the exact refusal (sense code and reason) each PERSISTENT RESERVE OUT becomes, the REPORT
CAPABILITIES bits the path clears, and how an ioctl's return value splits into SCSI status and
host byte.

Why whole values: the decisions are data the executor issues unchanged, so a wrong byte, a lost
flag or a swapped reason is a wrong command or a misleading log line. ``_ioc`` is called here at
test time (the module's IOC_PR_* constants are computed at import, before mutation testing
switches a mutant on); the expected numbers are the kernel headers' expansions of ``_IOW`` etc.
"""

from __future__ import annotations

import struct

from scsi_pr.helper.executors import block_pr
from scsi_pr.helper.executors.block_pr import Ioctl, Outcome, Refusal
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_OPCODE,
    INVALID_PARAM,
    INVALID_PARAM_LEN,
)
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T

K1, K2 = 0x1111, 0x2222
#: keys with the top bit set: a signed unpack would make them negative
HIGH1, HIGH2 = 0xFEDC_BA98_7654_3210, 0x8000_0000_0000_0001


def _cdb(action: int, scope_type: int = 0) -> bytes:
    """A 10-byte PR OUT CDB with bytes 1 and 2 as given (PARAMETER LIST LENGTH 24)."""
    return bytes([0x5F, action, scope_type, 0, 0, 0, 0, 0, 24, 0])


def _data(key: int = K1, sa_key: int = K2, flags: int = 0, length: int = 24) -> bytes:
    """A PR OUT parameter list: RESERVATION KEY, SERVICE ACTION RESERVATION KEY, byte 20."""
    return struct.pack(">QQ4xB", key, sa_key, flags).ljust(length, b"\0")[:length]


# -- _ioc ------------------------------------------------------------------------------------
def test_ioc_packs_direction_size_type_and_number_as_asm_generic_ioctl_h() -> None:
    """_IOC(dir, 'p', nr, size): dir in bits 30-31, size in 16-29, 'p' (70h) in 8-15, nr 0-7."""
    ioc = block_pr._ioc
    assert ioc(block_pr._WRITE, 200, block_pr.REGISTRATION.size) == 0x401870C8
    assert ioc(block_pr._WRITE, 201, block_pr.RESERVATION.size) == 0x401070C9
    assert ioc(block_pr._WRITE, 203, block_pr.PREEMPT.size) == 0x401870CB
    assert ioc(block_pr._WRITE, 205, block_pr.CLEAR.size) == 0x401070CD
    assert ioc(block_pr._WRITE | block_pr._READ, 206, block_pr.READ_KEYS.size) == 0xC01070CE
    assert ioc(block_pr._READ, 207, block_pr.READ_RESERVATION.size) == 0x801070CF
    assert ioc(0, 0, 0) == 0x7000
    assert ioc(3, 0xFF, 0x3FFF) == 0xFFFF70FF


# -- pr_out: what is not a PR OUT the ioctls could carry ---------------------------------------
def test_anything_but_a_whole_pr_out_cdb_is_an_invalid_opcode() -> None:
    """A short CDB is refused even with the right opcode, and any other opcode whatever its
    length: both are needed, not either."""
    refused = Refusal(INVALID_OPCODE, "not a PERSISTENT RESERVE OUT CDB")
    assert block_pr.pr_out(_cdb(SA.REGISTER, 0x01)[:9], _data()) == refused
    assert block_pr.pr_out(b"\x5e" + _cdb(SA.REGISTER, 0x01)[1:], _data()) == refused
    assert block_pr.pr_out(b"", _data()) == refused


def test_a_service_action_that_does_not_exist_is_named_in_the_refusal() -> None:
    """Only bits 4-0 of byte 1 are the SERVICE ACTION (bits 7-5 set here, byte 2 differs)."""
    got = block_pr.pr_out(_cdb(0xE9, 0x01), _data())
    assert got == Refusal(INVALID_FIELD, "service action 0x9 does not exist")
    got = block_pr.pr_out(_cdb(0x1F, 0x01), _data())
    assert got == Refusal(INVALID_FIELD, "service action 0x1f does not exist")


def test_register_and_move_and_replace_lost_reservation_have_no_ioctl() -> None:
    move = block_pr.pr_out(_cdb(SA.REGISTER_AND_MOVE, 0x01), _data())
    assert move == Refusal(INVALID_FIELD, "no block-layer ioctl for it")
    lost = block_pr.pr_out(_cdb(SA.REPLACE_LOST_RESERVATION, 0x01), _data())
    assert lost == Refusal(INVALID_FIELD, "REPLACE_LOST_RESERVATION has no block-layer ioctl")


def test_the_parameter_list_is_24_bytes_unless_spec_i_pt_is_set() -> None:
    """SPC-5 6.17.3: without SPEC_I_PT the list is exactly 24 bytes; with it, longer is valid
    (and then refused for SPEC_I_PT). The bit is byte 20's, not byte 21's."""
    cdb = _cdb(SA.REGISTER)
    assert block_pr.pr_out(cdb, _data(length=16)) == Refusal(
        INVALID_PARAM_LEN, "parameter list of 16 bytes, not 24"
    )
    assert block_pr.pr_out(cdb, _data(length=28)) == Refusal(
        INVALID_PARAM_LEN, "parameter list of 28 bytes, not 24"
    )
    spec_i_pt_in_byte_21 = _data(length=28)[:21] + b"\x08" + bytes(6)
    assert block_pr.pr_out(cdb, spec_i_pt_in_byte_21) == Refusal(
        INVALID_PARAM_LEN, "parameter list of 28 bytes, not 24"
    )
    no_field = Refusal(INVALID_PARAM, "no ioctl field for them")
    assert block_pr.pr_out(cdb, _data(flags=0x08, length=28)) == no_field
    assert block_pr.pr_out(cdb, _data(flags=0x08)) == no_field
    assert block_pr.pr_out(cdb, _data(flags=0x04)) == no_field


def test_a_type_that_does_not_exist_is_refused_before_the_scope() -> None:
    checked = block_pr.pr_out(_cdb(SA.RESERVE, 0x22), _data())
    assert checked == Refusal(INVALID_FIELD, "TYPE 0x2 does not exist")
    assert block_pr.pr_out(_cdb(SA.PREEMPT, 0x0D), _data()) == Refusal(
        INVALID_FIELD, "TYPE 0xd does not exist"
    )


def test_any_scope_but_lu_scope_is_refused_by_its_value() -> None:
    """SCOPE is bits 7-4 of byte 2: 1 (reserved) is not LU_SCOPE (0), nor is Fh."""
    assert block_pr.pr_out(_cdb(SA.RESERVE, 0x11), _data()) == Refusal(
        INVALID_FIELD, "SCOPE 0x1: only LU_SCOPE exists"
    )
    assert block_pr.pr_out(_cdb(SA.RELEASE, 0xF3), _data()) == Refusal(
        INVALID_FIELD, "SCOPE 0xf: only LU_SCOPE exists"
    )


# -- pr_out: the ioctl and its argument ------------------------------------------------------
def test_register_packs_both_keys_unsigned_and_the_ignore_flag() -> None:
    """struct pr_registration {old_key, new_key, flags, __pad}, native order; the SCOPE/TYPE
    byte does not matter to a REGISTER."""
    assert block_pr.pr_out(_cdb(SA.REGISTER, 0xFF), _data(HIGH1, HIGH2)) == Ioctl(
        block_pr.IOC_PR_REGISTER, struct.pack("=QQII", HIGH1, HIGH2, 0, 0), "REGISTER"
    )
    ignore = block_pr.pr_out(_cdb(SA.REGISTER_AND_IGNORE_EXISTING_KEY), _data(0, HIGH2))
    assert ignore == Ioctl(
        block_pr.IOC_PR_REGISTER,
        struct.pack("=QQII", 0, HIGH2, 1, 0),
        "REGISTER_AND_IGNORE_EXISTING_KEY",
    )


def test_clear_carries_only_the_key() -> None:
    assert block_pr.pr_out(_cdb(SA.CLEAR, 0xFF), _data(HIGH1, K2)) == Ioctl(
        block_pr.IOC_PR_CLEAR, struct.pack("=QII", HIGH1, 0, 0), "CLEAR"
    )


def test_reserve_and_release_carry_the_key_and_the_block_layers_type() -> None:
    assert block_pr.pr_out(_cdb(SA.RESERVE, T.EXCLUSIVE_ACCESS), _data(HIGH1)) == Ioctl(
        block_pr.IOC_PR_RESERVE, struct.pack("=QII", HIGH1, 2, 0), "RESERVE"
    )
    release = block_pr.pr_out(_cdb(SA.RELEASE, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS), _data(K1))
    assert release == Ioctl(block_pr.IOC_PR_RELEASE, struct.pack("=QII", K1, 6, 0), "RELEASE")


def test_preempt_and_preempt_and_abort_carry_both_keys_and_the_type() -> None:
    preempt = block_pr.pr_out(_cdb(SA.PREEMPT, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS), _data())
    assert preempt == Ioctl(block_pr.IOC_PR_PREEMPT, struct.pack("=QQII", K1, K2, 5, 0), "PREEMPT")
    abort = block_pr.pr_out(
        _cdb(SA.PREEMPT_AND_ABORT, T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY), _data(HIGH1, HIGH2)
    )
    assert abort == Ioctl(
        block_pr.IOC_PR_PREEMPT_ABORT,
        struct.pack("=QQII", HIGH1, HIGH2, 4, 0),
        "PREEMPT_AND_ABORT",
    )


def test_the_cdb_helpers_prout_becomes_the_same_ioctl() -> None:
    """The 10-byte CDB of ``sim.cdb`` padded to 16 bytes, as the daemon hands it over."""
    cdb, data = C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    assert block_pr.pr_out(cdb.ljust(16, b"\0"), data) == Ioctl(
        block_pr.IOC_PR_RESERVE, struct.pack("=QII", K1, 3, 0), "RESERVE"
    )


# -- PR IN data and REPORT CAPABILITIES --------------------------------------------------------
def test_read_reservation_data_maps_the_type_back_to_scsi() -> None:
    """PRGENERATION, ADDITIONAL LENGTH 16, key, LU_SCOPE with the SCSI TYPE code."""
    data = block_pr.read_reservation_data(HIGH1, 0x01020304, block_pr.PrType.EXCLUSIVE_ACCESS)
    assert data == bytes.fromhex("01020304 00000010 fedcba9876543210 00000000 00 03 0000")
    assert block_pr.read_reservation_data(K1, 5, 0) == bytes.fromhex("00000005 00000000")


def test_read_keys_data_lists_every_key() -> None:
    assert block_pr.read_keys_data(7, 2, [HIGH1, K1]) == bytes.fromhex(
        "00000007 00000010 fedcba9876543210 0000000000001111"
    )


def test_read_keys_data_of_a_cut_list_keeps_the_devices_additional_length() -> None:
    """num_keys 1,500 with one key copied: ADDITIONAL LENGTH 12,000 (0x2ee0), one key."""
    assert block_pr.read_keys_data(7, 1500, [K1]) == bytes.fromhex(
        "00000007 00002ee0 0000000000001111"
    )


def test_the_path_clears_sip_c_atp_c_and_rlr_c_of_byte_2_only() -> None:
    """Byte 2 holds RLR_C, CRH, SIP_C, ATP_C, PTPL_C; byte 3 (TMV, PTPL_A...) is untouched."""
    device = bytes.fromhex("0008ff00ea010000")
    assert block_pr.capabilities_of_path(device) == bytes.fromhex("00087300ea010000")
    assert block_pr.capabilities_of_path(bytes.fromhex("0008ff")) == bytes.fromhex("000873")
    assert block_pr.capabilities_of_path(bytes.fromhex("0008")) == bytes.fromhex("0008")
    assert block_pr.capabilities_of_path(b"") == b""


def test_an_ioctl_return_value_is_the_status_and_host_bytes() -> None:
    """sd's SCSI result: status in bits 0-7, host byte in bits 16-23; the message (8-15) and
    driver (24-31) bytes are not part of either."""
    assert block_pr.outcome(0) == Outcome(0, 0)
    assert block_pr.outcome(0x18) == Outcome(0x18, 0)
    assert block_pr.outcome(0x000E_0002) == Outcome(0x02, 0x0E)
    assert block_pr.outcome(0xFF00_FF00) == Outcome(0, 0)
    assert block_pr.outcome(0x00FF_00FF) == Outcome(0xFF, 0xFF)
