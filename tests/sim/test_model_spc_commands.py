"""The model's non-PR commands byte by byte: INQUIRY (standard data, VPD 00h, 80h, 83h),
REPORT LUNS, READ CAPACITY(10/16), MODE SENSE(6/10), REQUEST SENSE; each refused field with its
FIELD POINTER (SPC-5 fixed format sense data: C/D=1, BPV when a bit is named).

Expected bytes are spelled out here from SPC-5/SBC-4, not built with the model's encoders."""

from __future__ import annotations

import hashlib
import struct

import pytest

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult

I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)
SERIAL = "SERIAL0123456789"
CACHING = bytes([0x08, 0x12]) + bytes(18)
CONTROL = bytes([0x0A, 0x0A, 0x00, 0x10]) + bytes(8)


@pytest.fixture
def lu() -> LogicalUnit:
    return LogicalUnit(
        blocks=0x12345,
        block_size=4096,
        serial=SERIAL,
        vendor="VEND",
        product="PRODUCT",
        revision="R1",
    )


def invalid_field_in_cdb(result: CommandResult, byte: int, bit: int | None = None) -> None:
    """CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB pointing at ``byte``/``bit``."""
    sense = bytearray(18)
    sense[0], sense[2], sense[7], sense[12] = 0x70, 0x05, 10, 0x24
    sense[15] = 0xC0 | (0x08 | bit if bit is not None else 0)
    sense[16:18] = byte.to_bytes(2, "big")
    assert (result.status, result.sense.hex()) == (Status.CHECK_CONDITION, sense.hex())


def good(result: CommandResult) -> bytes:
    assert result.status == Status.GOOD, f"got {result}"
    return result.data


# -- INQUIRY (SPC-5 6.7) ---------------------------------------------------------------------
def test_standard_inquiry_data(lu: LogicalUnit) -> None:
    data = good(lu.execute(I1, C.inquiry(allocation_length=255)))
    # direct-access block device, VERSION 07h (SPC-5), RESPONSE DATA FORMAT 2, ADDITIONAL
    # LENGTH 31 (36 bytes), CMDQUE
    assert data[:8] == bytes([0x00, 0x00, 0x07, 0x02, 31, 0x00, 0x00, 0x02])
    assert data[8:] == b"VEND    " + b"PRODUCT         " + b"R1  "
    assert good(lu.execute(I1, C.inquiry(allocation_length=5))) == data[:5]


def test_inquiry_vendor_fields_are_cut_to_their_width() -> None:
    lu = LogicalUnit(vendor="LONGVENDOR", product="P" * 20, revision="REVISION")
    data = good(lu.execute(I1, C.inquiry()))
    assert data[4] == 31 and data[8:] == b"LONGVEND" + b"P" * 16 + b"REVI"


def test_inquiry_allocation_length_is_two_bytes(lu: LogicalUnit) -> None:
    assert len(good(lu.execute(I1, C.inquiry(allocation_length=0x100)))) == 36
    assert len(good(lu.execute(I1, C.inquiry(True, 0x83, 0x100)))) > 8


def test_every_command_has_a_length(lu: LogicalUnit) -> None:
    """SPC-5 4.2.5.1: the group code fixes the CDB length; one byte short is refused, the field
    pointer at the first missing byte."""
    from scsi_pr.sim.commands import COMMANDS

    length_of_group = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}
    for opcode in [*COMMANDS, 0x5E, 0x5F]:
        n = length_of_group[opcode >> 5]
        invalid_field_in_cdb(lu.execute(I1, bytes([opcode]) + bytes(n - 2)), n - 1)


def test_vpd_supported_pages(lu: LogicalUnit) -> None:
    assert good(lu.execute(I1, C.inquiry(True, 0x00))) == bytes([0, 0, 0, 3, 0x00, 0x80, 0x83])


def test_vpd_unit_serial_number(lu: LogicalUnit) -> None:
    assert good(lu.execute(I1, C.inquiry(True, 0x80))) == bytes([0, 0x80, 0, 16]) + SERIAL.encode()


def test_vpd_device_identification(lu: LogicalUnit) -> None:
    """NAA 6 LU name (binary, LU association), T10 vendor ID (ASCII: vendor padded to 8 +
    serial), relative target port (PIV=1, target-port association) of the receiving port."""
    naa = (0x6 << 60) | int.from_bytes(hashlib.sha1(SERIAL.encode()).digest()[:8], "big") >> 4
    t10 = b"VEND    " + SERIAL.encode()
    for nexus, port in ((I1, 1), (I2, 2)):
        payload = (
            bytes([0x01, 0x03, 0x00, 0x08])
            + naa.to_bytes(8, "big")
            + bytes([0x02, 0x01, 0x00, len(t10)])
            + t10
            + bytes([0x61, 0x94, 0x00, 0x04, 0, 0, 0, port])
        )
        page = good(lu.execute(nexus, C.inquiry(True, 0x83, 255)))
        assert page == bytes([0, 0x83]) + len(payload).to_bytes(2, "big") + payload
    assert good(lu.execute(I1, C.inquiry(True, 0x83, 10))) == page[:10]


def test_the_relative_target_port_is_read_back_from_the_page(lu: LogicalUnit) -> None:
    """The reader the LIO rig measures each port's RTPI with (configfs does not say on 6.12)."""
    from scsi_pr.sim.commands import relative_target_port_of

    for nexus, port in ((I1, 1), (I2, 2)):
        assert relative_target_port_of(good(lu.execute(nexus, C.inquiry(True, 0x83, 255)))) == port
    page = good(lu.execute(I2, C.inquiry(True, 0x83, 255)))
    assert relative_target_port_of(page[:-4]) is None  # cut inside the designator
    lu_only = page[: 4 + 12]  # the NAA designator alone, header length left as it was
    assert relative_target_port_of(lu_only) is None
    # a designator of another association with type 4 does not count
    other = bytearray(page)
    other[-7] = 0xA4  # PIV=1, ASSOCIATION 10b (SCSI target device), type 4
    assert relative_target_port_of(bytes(other)) is None


def test_the_relative_target_port_reader_reads_what_the_page_length_says() -> None:
    from scsi_pr.sim.commands import relative_target_port_of

    naa = bytes([0x01, 0x03, 0x00, 0x08]) + bytes(8)
    t10 = bytes([0x02, 0x01, 0x00, 240]) + b"x" * 240
    rtpi = bytes([0x61, 0x94, 0x00, 0x04, 0, 0, 0x01, 0x02])

    def page(*designators: bytes, length: int | None = None) -> bytes:
        body = b"".join(designators)
        stated = len(body) if length is None else length
        return bytes([0, 0x83]) + stated.to_bytes(2, "big") + body

    assert relative_target_port_of(page(naa, t10, rtpi)) == 0x0102  # PAGE LENGTH above 255
    assert relative_target_port_of(page(rtpi, naa)) == 0x0102  # followed by another designator
    assert relative_target_port_of(page(naa, rtpi, length=12)) is None  # bytes past the page
    assert relative_target_port_of(page(naa, rtpi, length=19)) is None  # one byte short


def test_vpd_t10_vendor_id_takes_eight_bytes_of_the_vendor() -> None:
    lu = LogicalUnit(vendor="LONGVENDOR", serial="S1")
    page = good(lu.execute(I1, C.inquiry(True, 0x83)))
    assert page[16:30] == bytes([0x02, 0x01, 0x00, 10]) + b"LONGVENDS1"


def test_naa_name_follows_the_serial() -> None:
    def naa(serial: str) -> bytes:
        return good(LogicalUnit(serial=serial).execute(I1, C.inquiry(True, 0x83)))[8:16]

    assert naa("A") == naa("A") != naa("B")
    assert naa("A")[0] >> 4 == 0x6


@pytest.mark.parametrize(
    ("cdb", "byte", "bit"),
    [
        (bytes([0x12, 0x02, 0, 0, 96, 0]), 1, 1),  # obsolete CMDDT
        (bytes([0x12, 0x80, 0, 0, 96, 0]), 1, 1),
        (C.inquiry(False, 0x80), 2, None),  # a PAGE CODE without EVPD
        (C.inquiry(True, 0xB0), 2, None),  # a VPD page the LU does not have
    ],
)
def test_inquiry_refuses(lu: LogicalUnit, cdb: bytes, byte: int, bit: int | None) -> None:
    invalid_field_in_cdb(lu.execute(I1, cdb), byte, bit)


# -- REPORT LUNS, READ CAPACITY --------------------------------------------------------------
def test_report_luns(lu: LogicalUnit) -> None:
    # LUN LIST LENGTH 8: one LUN, 0
    assert good(lu.execute(I1, C.report_luns(0x100))) == bytes([0, 0, 0, 8]) + bytes(12)
    assert good(lu.execute(I1, C.report_luns(16))) == bytes([0, 0, 0, 8]) + bytes(12)
    invalid_field_in_cdb(lu.execute(I1, C.report_luns(15)), 6)
    # ALLOCATION LENGTH is all four bytes 6-9: 1000000h is plenty, not zero
    assert good(lu.execute(I1, C.report_luns(0x01000000))) == bytes([0, 0, 0, 8]) + bytes(12)


def test_read_capacity(lu: LogicalUnit) -> None:
    assert good(lu.execute(I1, C.read_capacity_10())) == struct.pack(">II", 0x12344, 4096)
    want = struct.pack(">QI", 0x12344, 4096) + bytes(20)
    assert good(lu.execute(I1, C.read_capacity_16(32))) == want
    assert good(lu.execute(I1, C.read_capacity_16(100))) == want
    assert good(lu.execute(I1, C.read_capacity_16(12))) == want[:12]
    assert good(lu.execute(I1, C.read_capacity_16(0x01000000))) == want  # bytes 10-13, all four


def test_read_capacity_10_saturates_on_a_large_lu() -> None:
    lu = LogicalUnit(blocks=0x1_0000_0005)
    assert good(lu.execute(I1, C.read_capacity_10())) == struct.pack(">II", 0xFFFFFFFF, 512)
    assert good(lu.execute(I1, C.read_capacity_16()))[:8] == (0x1_0000_0004).to_bytes(8, "big")


def test_service_action_in_16_other_than_read_capacity(lu: LogicalUnit) -> None:
    invalid_field_in_cdb(lu.execute(I1, bytes([0x9E, 0x11]) + bytes(14)), 1, 4)


# -- MODE SENSE (SPC-5 6.14, 6.15) -----------------------------------------------------------
def test_mode_sense_6_all_pages_with_block_descriptor(lu: LogicalUnit) -> None:
    cdb = bytes([0x1A, 0x00, 0x3F, 0, 255, 0])
    descriptor = struct.pack(">II", 0x12345, 4096)
    body = descriptor + CACHING + CONTROL
    assert good(lu.execute(I1, cdb)) == bytes([3 + len(body), 0, 0, 8]) + body


def test_mode_sense_6_one_page_without_descriptor(lu: LogicalUnit) -> None:
    assert good(lu.execute(I1, C.mode_sense_6(0x0A))) == bytes([15, 0, 0, 0]) + CONTROL
    assert good(lu.execute(I1, C.mode_sense_6(0x08, 6))) == (bytes([23, 0, 0, 0]) + CACHING)[:6]


def test_mode_sense_10(lu: LogicalUnit) -> None:
    body = CACHING + CONTROL
    want = struct.pack(">HBBxxH", 6 + len(body), 0, 0, 0) + body
    assert good(lu.execute(I1, C.mode_sense_10())) == want
    assert good(lu.execute(I1, C.mode_sense_10(0x3F, 9))) == want[:9]
    cdb = bytes([0x5A, 0x00, 0x08, 0, 0, 0, 0, 1, 0, 0])
    descriptor = struct.pack(">II", 0x12345, 4096)
    want = struct.pack(">HBBxxH", 6 + 8 + len(CACHING), 0, 0, 8) + descriptor + CACHING
    assert good(lu.execute(I1, cdb)) == want


def test_mode_sense_block_descriptor_saturates() -> None:
    lu = LogicalUnit(blocks=0x1_0000_0001)
    data = good(lu.execute(I1, bytes([0x1A, 0x00, 0x0A, 0, 255, 0])))
    assert data[4:12] == struct.pack(">II", 0xFFFFFFFF, 512)


@pytest.mark.parametrize(
    ("cdb", "byte", "bit"),
    [
        (bytes([0x1A, 0x08, 0xFF, 0, 255, 0]), 2, 7),  # PC 11b: saved values
        (bytes([0x1A, 0x08, 0x01, 0, 255, 0]), 2, 5),  # a page the LU does not have
        (bytes([0x5A, 0x08, 0x1C, 0, 0, 0, 0, 1, 0, 0]), 2, 5),
    ],
)
def test_mode_sense_refuses(lu: LogicalUnit, cdb: bytes, byte: int, bit: int) -> None:
    invalid_field_in_cdb(lu.execute(I1, cdb), byte, bit)


def test_mode_sense_changeable_and_default_values_are_the_current_ones(lu: LogicalUnit) -> None:
    current = good(lu.execute(I1, C.mode_sense_6()))
    for pc in (0x40, 0x80):
        assert good(lu.execute(I1, bytes([0x1A, 0x08, pc | 0x3F, 0, 255, 0]))) == current


# -- REQUEST SENSE ---------------------------------------------------------------------------
def test_request_sense_without_a_condition_is_no_sense(lu: LogicalUnit) -> None:
    assert good(lu.execute(I1, C.request_sense())) == bytes([0x70, 0, 0, 0, 0, 0, 0, 10]) + bytes(
        10
    )
    assert good(lu.execute(I1, C.request_sense(8))) == bytes([0x70, 0, 0, 0, 0, 0, 0, 10])


def test_request_sense_refuses_descriptor_format(lu: LogicalUnit) -> None:
    invalid_field_in_cdb(lu.execute(I1, bytes([0x03, 0x01, 0, 0, 18, 0])), 1, 0)
