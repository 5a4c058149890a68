"""What the target answers itself around the model: sizes, data-out lengths and residuals,
REPORT LUNS, and LUNs that do not exist."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from scsi_pr.sim import ITNexus, cdb
from scsi_pr.target.lus import (
    MAX_LUNS,
    LunConfigError,
    ServedLUs,
    data_out_length,
    fit_write,
    parse_size,
    read_length,
)

NEXUS = ITNexus.named("iqn.2024-01.test:host,i,0x000000000001")


@pytest.mark.parametrize(
    ("text", "size"), [("512", 512), ("64M", 64 << 20), ("1g", 1 << 30), ("4KiB", 4096)]
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "100", "1X", "-1M", "1.5G"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(LunConfigError) as refused:
        parse_size(text)
    assert repr(text) in str(refused.value)  # the user sees what was wrong


def test_data_out_length_and_fitting_writes() -> None:
    assert data_out_length(cdb.write_10(0, 3)) == 1536
    assert data_out_length(bytes([0x0A, 0, 0, 0, 0, 0])) == 256 * 512  # WRITE(6): 0 is 256
    assert data_out_length(cdb.prout(1, 0, 5)[0]) == 24
    assert data_out_length(cdb.read_10(0, 3)) is None
    assert fit_write(cdb.write_10(0, 3), 1024) == cdb.write_10(0, 2)
    assert fit_write(cdb.write_16(9, 3), 0) == cdb.write_16(9, 0)
    assert fit_write(cdb.write_10(0, 1), 200) is None  # part of a block
    assert fit_write(bytes([0x0A, 0, 0, 0, 2, 0]), 0) is None  # WRITE(6) cannot say 0


@pytest.fixture
def lus(tmp_path: Path) -> ServedLUs:
    return ServedLUs(tmp_path, 3, 1 << 20)


def test_images_are_created_once(lus: ServedLUs, tmp_path: Path) -> None:
    assert lus.created == [0, 1, 2] and lus.size(2) == 1 << 20
    again = ServedLUs(tmp_path, 4, 2 << 20)  # existing images keep their size and data
    assert again.created == [3] and again.size(0) == 1 << 20 and again.size(3) == 2 << 20


def test_report_luns_lists_the_target(lus: ServedLUs) -> None:
    answer = lus.execute(0, NEXUS, cdb.report_luns(64))
    assert answer.result.data == bytes([0, 0, 0, 24, 0, 0, 0, 0]) + b"".join(
        bytes([0, lun]) + bytes(6) for lun in range(3)
    )
    for lun in (0, 7):  # from a LUN that exists or not
        short = lus.execute(lun, NEXUS, cdb.report_luns(64)[:6] + bytes([0, 0, 0, 8, 0, 0]))
        assert short.result.sense[12] == 0x24  # ALLOCATION LENGTH below 16


def test_absent_lun(lus: ServedLUs) -> None:
    inquiry = lus.execute(7, NEXUS, cdb.inquiry()).result
    assert inquiry.status == 0 and inquiry.data[0] == 0x7F  # qualifier 011b, type 1Fh
    sense = lus.execute(7, NEXUS, cdb.request_sense()).result
    assert sense.status == 0 and sense.data[12:14] == b"\x25\x00"
    tur = lus.execute(None, NEXUS, cdb.test_unit_ready()).result
    assert tur.status == 2 and tur.sense[12:14] == b"\x25\x00"


def test_write_residuals(lus: ServedLUs) -> None:
    answer = lus.execute(0, NEXUS, cdb.write_10(0, 2), bytes(512), write=True)
    assert (answer.result.status, answer.transferred) == (0, 1024)  # one block written
    partial = lus.execute(0, NEXUS, cdb.write_10(0, 1), bytes(200), write=True)
    assert partial.result.sense[12:14] == b"\x0e\x03" and partial.transferred == 512
    assert lus.execute(0, NEXUS, cdb.test_unit_ready(), bytes(8), write=True).transferred == 0


def test_read_length_of_each_read_form() -> None:
    assert read_length(cdb.read_10(0, 3)) == 1536
    assert read_length(cdb.read_16(0, 1 << 21)) == 1 << 30
    assert read_length(bytes([0x08, 0, 0, 0, 0, 0])) == 256 * 512  # READ(6): 0 is 256
    assert read_length(bytes([0x08, 0, 0, 0, 2, 0])) == 1024
    assert read_length(cdb.write_10(0, 3)) is None
    assert read_length(bytes([0x28, 0, 0])) is None  # too short to hold the field


def test_a_read_over_the_largest_transfer_is_refused_without_reading(tmp_path: Path) -> None:
    """The model would read the whole TRANSFER LENGTH (not the initiator's EDTL) first."""
    lus = ServedLUs(tmp_path, 1, 1 << 20, max_read=4096)
    assert lus.execute(0, NEXUS, cdb.read_10(0, 8)).result.status == 0  # 4096 bytes: served
    refused = lus.execute(0, NEXUS, cdb.read_16(0, 9)).result
    assert refused.status == 2 and refused.sense.hex() == "700005000000000a00000000240000c0000a"
    six = lus.execute(0, NEXUS, bytes([0x08, 0, 0, 0, 0, 0])).result  # 256 blocks
    assert six.sense[12] == 0x24 and six.sense[15:18] == bytes([0xC0, 0, 4])


def _report_luns(select: int, allocation_length: int) -> bytes:
    report = bytearray(cdb.report_luns(allocation_length))
    report[2] = select
    return bytes(report)


LISTED = bytes([0, 0, 0, 24, 0, 0, 0, 0]) + b"".join(bytes([0, n]) + bytes(6) for n in range(3))


@pytest.mark.parametrize("lun", [0, 7])  # the LU answers, or the target for an absent LUN
@pytest.mark.parametrize(("select", "data"), [(0x00, LISTED), (0x02, LISTED), (0x01, bytes(8))],
                         ids=["all", "all-but-well-known", "well-known"])  # fmt: skip
def test_report_luns_select_report(lus: ServedLUs, lun: int, select: int, data: bytes) -> None:
    """SPC-5 REPORT LUNS SELECT REPORT: 00h and 02h list every LUN of the target, 01h (the
    well-known LUs, of which there are none) an empty list; the list is cut at ALLOCATION
    LENGTH."""
    assert lus.execute(lun, NEXUS, _report_luns(select, 64)).result.data == data
    assert lus.execute(lun, NEXUS, _report_luns(select, 20)).result.data == data[:20]


@pytest.mark.parametrize("lun", [0, 7])
@pytest.mark.parametrize(("report", "byte"), [
    (_report_luns(0x03, 64), 2),  # a SELECT REPORT no one defined
    (_report_luns(0x00, 15), 6),  # ALLOCATION LENGTH below 16
    (_report_luns(0x00, 64)[:11], 11),  # a CDB cut short: its first missing byte
], ids=["select-report", "allocation-length", "short-cdb"])  # fmt: skip
def test_report_luns_refusals_point_at_the_field(
    lus: ServedLUs, lun: int, report: bytes, byte: int
) -> None:
    """CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB with the field's byte in the
    sense-key specific bytes (SKSV, C/D), from a LUN that exists or not."""
    r = lus.execute(lun, NEXUS, report).result
    assert (r.status, r.sense[2], r.sense[12:14]) == (2, 0x05, b"\x24\x00"), r
    assert r.sense[15:18] == bytes([0xC0, 0, byte]), r


def test_absent_lun_inquiry_and_request_sense_bytes(lus: ServedLUs) -> None:
    """For a LUN that does not exist: standard INQUIRY data with PERIPHERAL QUALIFIER 011b
    and DEVICE TYPE 1Fh (SPC-5 6.7.2), cut at ALLOCATION LENGTH; REQUEST SENSE data saying
    LOGICAL UNIT NOT SUPPORTED, cut at its ALLOCATION LENGTH; a vital product data page or
    any other command: CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED."""
    inquiry = lus.execute(7, NEXUS, cdb.inquiry()).result
    assert inquiry.status == 0 and inquiry.data == (
        bytes([0x7F, 0, 0x07, 0x02, 31, 0, 0, 0x02]) + b"SCSI-PR NO LU           0001"
    )
    assert lus.execute(7, NEXUS, cdb.inquiry(allocation_length=5)).result.data == inquiry.data[:5]
    sense = lus.execute(7, NEXUS, cdb.request_sense()).result
    assert sense.status == 0
    assert sense.data == bytes.fromhex("700005000000000a00000000250000000000")
    assert lus.execute(7, NEXUS, cdb.request_sense(8)).result.data == sense.data[:8]
    full = lus.execute(7, NEXUS, cdb.inquiry(allocation_length=0x100)).result
    assert full.data == inquiry.data  # ALLOCATION LENGTH is two bytes: 0100h is 256
    for refused in (cdb.inquiry(evpd=True, page=0x83), cdb.inquiry(evpd=True, page=0x00),
                    cdb.inquiry()[:5],
                    cdb.request_sense()[:5], cdb.read_10(0, 1), b""):  # fmt: skip
        r = lus.execute(7, NEXUS, refused).result
        assert (r.status, r.sense[2], r.sense[12:14]) == (2, 0x05, b"\x25\x00"), refused


def _verify_10(bytchk: int, blocks: int) -> bytes:
    return bytes([0x2F, bytchk << 1, 0, 0, 0, 0, 0]) + blocks.to_bytes(2, "big") + bytes(1)


def test_data_out_length_of_every_form_that_takes_data() -> None:
    """What the target must collect before it runs a command: WRITE's TRANSFER LENGTH in
    blocks (0 is 0 blocks but for WRITE(6)), VERIFY(10)'s only with BYTCHK 01b (SBC-4: the
    others compare nothing sent), PERSISTENT RESERVE OUT's 4-byte PARAMETER LIST LENGTH; a
    CDB too short to hold the field, or none at all, asks for nothing."""
    assert data_out_length(cdb.write_10(0, 0)) == 0
    assert data_out_length(cdb.write_10(0, 3)[:9]) == 1536  # just long enough
    assert data_out_length(cdb.write_10(0, 3)[:8]) is None
    assert data_out_length(_verify_10(0b01, 0x0102)) == 0x0102 * 512
    assert [data_out_length(_verify_10(b, 3)) for b in (0b00, 0b10, 0b11)] == [None] * 3
    assert data_out_length(_verify_10(0b01, 3)[:8]) is None
    prout = bytes([0x5F, 0, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0])
    assert data_out_length(prout) == 0x01020304
    assert data_out_length(prout[:9]) == 0x01020304 and data_out_length(prout[:8]) is None
    assert data_out_length(b"") is None and read_length(b"") is None


@pytest.mark.parametrize("count", [1, MAX_LUNS])
def test_one_to_max_luns_are_served_each_a_private_sparse_image(tmp_path: Path, count: int) -> None:
    state = tmp_path / "not" / "yet"  # made, parents too
    lus = ServedLUs(state, count, 1 << 20)
    assert lus.created == list(range(count))
    image = state / "lun0.img"
    assert stat.S_IMODE(image.stat().st_mode) == 0o600  # the disk's data is the owner's
    assert image.stat().st_blocks * 512 < 1 << 20  # sparse


@pytest.mark.parametrize("count", [0, MAX_LUNS + 1])
def test_a_lun_count_outside_one_to_max_is_refused(tmp_path: Path, count: int) -> None:
    with pytest.raises(LunConfigError) as refused:
        ServedLUs(tmp_path, count, 1 << 20)
    assert str(refused.value) == f"{count} LUNs: serve 1..{MAX_LUNS}"
    assert not list(tmp_path.iterdir())


def test_an_image_that_cannot_be_a_disk_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "lun0.img").mkdir()
    (tmp_path / "lun1.img").write_bytes(bytes(511))
    for luns, image in ((1, "lun0.img"), (2, "lun0.img")):
        with pytest.raises(LunConfigError) as refused:
            ServedLUs(tmp_path, luns, 1 << 20)
        assert str(refused.value).startswith(f"{tmp_path / image} is not a usable LUN image")
    (tmp_path / "lun0.img").rmdir()
    with pytest.raises(LunConfigError, match=r"lun1\.img is not a usable LUN image"):
        ServedLUs(tmp_path, 2, 1 << 20)  # a file shorter than one block
    (tmp_path / "lun1.img").write_bytes(bytes(512))
    kept = ServedLUs(tmp_path, 2, 1 << 20)  # one block is a disk: kept as it is
    assert kept.created == [] and kept.size(1) == 512  # lun0: made by the refused start


def test_a_state_dir_that_cannot_be_made_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(LunConfigError) as refused:
        ServedLUs(tmp_path / "file" / "state", 1, 1 << 20)
    assert str(refused.value).startswith(f"cannot prepare the LUN images in {tmp_path}/file/state:")


@pytest.mark.parametrize(("ports", "served"), [(2, False), (3, True)])
def test_the_lus_have_as_many_target_ports_as_configured(
    tmp_path: Path, ports: int, served: bool
) -> None:
    """A session through port 3 reaches an LU of three ports; an LU of two does not know it."""
    lus = ServedLUs(tmp_path, 1, 1 << 20, target_ports=ports)
    nexus = ITNexus.named("iqn.2024-01.test:host,i,0x000000000001", target_port=3)
    result = lus.execute(0, nexus, cdb.inquiry()).result
    assert (result.status == 0) is served
    if not served:
        assert (result.sense[2], result.sense[12:14]) == (0x05, b"\x25\x00")


def test_an_absent_luns_report_luns_reads_the_whole_cdb_and_never_raises(lus: ServedLUs) -> None:
    """ALLOCATION LENGTH is four bytes (16 is enough, 2**24 too); SELECT REPORT is byte 2; a
    CDB cut anywhere is refused at its first missing byte, never an exception."""
    listed = bytes([0, 0, 0, 24, 0, 0, 0, 0]) + b"".join(bytes([0, n]) + bytes(6) for n in range(3))
    assert lus.execute(7, NEXUS, cdb.report_luns(16)).result.data == listed[:16]
    assert lus.execute(7, NEXUS, cdb.report_luns(1 << 24)).result.data == listed
    for length in range(1, 12):
        r = lus.execute(7, NEXUS, cdb.report_luns(64)[:length]).result
        assert (r.status, r.sense[12], r.sense[16:18]) == (2, 0x24, length.to_bytes(2, "big"))
    bad_select = lus.execute(7, NEXUS, bytes([0xA0, 0, 0x05])).result
    assert bad_select.sense[16:18] == (2).to_bytes(2, "big")  # SELECT REPORT, not the length


def test_a_write_with_more_data_than_its_blocks_writes_only_its_blocks(lus: ServedLUs) -> None:
    answer = lus.execute(0, NEXUS, cdb.write_10(3, 1), b"W" * 1024, write=True)
    assert (answer.result.status, answer.transferred) == (0, 512)  # an overflow residual
    assert lus.execute(0, NEXUS, cdb.read_10(3, 2)).result.data == b"W" * 512 + bytes(512)


def test_a_command_without_data_out_has_no_residual_unless_data_came(lus: ServedLUs) -> None:
    assert lus.execute(0, NEXUS, cdb.test_unit_ready()).transferred is None
    assert lus.execute(0, NEXUS, cdb.test_unit_ready(), b"", write=True).transferred == 0
    nothing = lus.execute(0, NEXUS, cdb.write_10(3, 1))  # no data at all: no block written
    assert (nothing.result.status, nothing.transferred) == (0, 512)  # what its CDB asked for


def test_the_default_lus_have_two_target_ports(tmp_path: Path) -> None:
    """As many as the helper's default --target-ports: port 3 is not one of them."""
    lus = ServedLUs(tmp_path, 1, 1 << 20)
    for port, status in ((2, 0), (3, 2)):
        nexus = ITNexus.named("iqn.2024-01.test:host,i,0x000000000001", target_port=port)
        assert lus.execute(0, nexus, cdb.inquiry()).result.status == status


@pytest.mark.parametrize(("length", "size"), [(9, None), (10, 1024)])
def test_verify_10_takes_its_data_from_a_whole_cdb(length: int, size: int | None) -> None:
    assert data_out_length(_verify_10(1, 2)[:length]) == size
