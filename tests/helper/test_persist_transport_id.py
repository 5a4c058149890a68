"""In-process tests of ``helper/persist/transport_id.py``: sg_persist's ``-X`` TransportID forms
(symbolic names, hex byte lists, ``file=`` lines), their packing into the parameter list, and
the READ FULL STATUS TransportID text. Exact bytes and messages, at each bound, so mutation
testing (which sees only this process) can tell a changed constant or slice from the original.
Expectations follow sg_persist(8) and sg3_utils' decode_sym_transportid/build_transportid/
decode_file_tids/sg_decode_transportid_str.
"""

from __future__ import annotations

import pytest

from scsi_pr.helper.persist import transport_id as t
from scsi_pr.helper.persist.transport_id import TransportIdSyntax


def sym(text: str) -> tuple[bytes | None, list[str]]:
    messages: list[str] = []
    return t.symbolic_transport_id(text, messages), messages


def z(n: int) -> bytes:
    return bytes(n)


# -- symbolic forms ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sas,5000c50012345678", b"\x06" + z(3) + bytes.fromhex("5000c50012345678") + z(12)),
        ("SAS,5000c50012345678", b"\x06" + z(3) + bytes.fromhex("5000c50012345678") + z(12)),
        ("sas,5000c50012345678 x", b"\x06" + z(3) + bytes.fromhex("5000c50012345678") + z(12)),
        ("fcp,21000024ff123456", z(8) + bytes.fromhex("21000024ff123456") + z(8)),
        ("sbp,0011223344556677", b"\x03" + z(7) + bytes.fromhex("0011223344556677") + z(8)),
        ("srp,8899aabbccddeeff", b"\x04" + z(7) + bytes.fromhex("8899aabbccddeeff") + z(8)),
        ("spi,258,3", b"\x01\x00\x01\x02\x00\x00\x00\x03" + z(16)),
        ("spi,65537,65538 x", b"\x01\x00\x00\x01\x00\x00\x00\x02" + z(16)),
    ],
)
def test_symbolic_names(text: str, expected: bytes) -> None:
    assert sym(text) == (expected, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sas,5000c5001234567", "badly formed symbolic SAS TransportID: 5000c5001234567"),
        ("sas,5000c500123456789", "badly formed symbolic SAS TransportID: 5000c500123456789"),
        ("fcp,21000024ff12345g", "badly formed symbolic FCP TransportID: 21000024ff12345g"),
        ("spi,1,", "badly formed symbolic SPI TransportID: 1,"),
        ("spi,1, ", "badly formed symbolic SPI TransportID: 1, "),
        ("spi,1", "badly formed symbolic SPI TransportID: 1"),
        ("spi,x,2", "badly formed symbolic SPI TransportID: x,2"),
        ("sop,1", "badly formed symbolic SOP TransportID: 1"),
        ("Sas,5000c50012345678", "unable to parse symbolic TransportID: Sas,5000c50012345678"),
        ("sas;5000c50012345678", "unable to parse symbolic TransportID: sas;5000c50012345678"),
        ("adt,1", "unable to parse symbolic TransportID: adt,1"),
        ("IQN.x", "unable to parse symbolic TransportID: IQN.x"),
    ],
)
def test_symbolic_refused(text: str, message: str) -> None:
    assert sym(text) == (None, [message])


def iscsi(name: bytes, alen: int, first: int = 0x05) -> bytes:
    body = bytes([first, 0, 0, alen]) + name
    return body.ljust(max(24, alen + 4), b"\0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iqn.a", iscsi(b"iqn.a", 20)),
        ("iqn.0123456789abcde", iscsi(b"iqn.0123456789abcde", 20)),  # 19 + NUL = 20
        ("iqn.0123456789abcdef", iscsi(b"iqn.0123456789abcdef", 24)),  # 21 -> 24
        ("iqn." + "n" * 26, iscsi(b"iqn." + b"n" * 26, 32)),
        ("iqn.ab cd", iscsi(b"iqn.ab", 20)),
        ("iqn.ab\tcd\tef", iscsi(b"iqn.ab", 20)),
        ("iqn.ab\tcd ef", iscsi(b"iqn.ab", 20)),
        ("iqn.x,i,0x1", iscsi(b"iqn.x,i,0x1", 20, 0x45)),
        ("iqn.x ,i,0x2", iscsi(b"iqn.x", 20)),
        ("iqn.x,i,0x1 ,i,0x2", iscsi(b"iqn.x,i,0x1", 20, 0x45)),
        ("iqn." + "m" * 235, iscsi(b"iqn." + b"m" * 235, 240)),
    ],
)
def test_symbolic_iscsi(text: str, expected: bytes) -> None:
    assert sym(text) == (expected, [])


def test_iscsi_name_too_long() -> None:
    assert sym("iqn." + "m" * 236) == (None, ["iSCSI name too long, alen=244"])


def test_iscsi_undecodable_name() -> None:
    assert sym("iqn.\udcff x") == (None, ["badly formed symbolic iSCSI TransportID: iqn.\\xff"])


def test_shown() -> None:
    assert t._shown("a\udcff") == "a\\xff"
    assert t._shown("a\ud800") == "a\\ud800"


# -- hex byte lists ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01", b"\x01"),
        ("1,2,ff", b"\x01\x02\xff"),
        ("01 02 03", b"\x01\x02\x03"),
        ("01 02,03", b"\x01\x02\x03"),
        ("01,02 03", b"\x01\x02\x03"),
        (" 01", b"\x01\x01"),  # sscanf skips the blank, then the blank is a separator too
        ("0, 5", b"\x00\x05\x05"),
    ],
)
def test_hex_list(text: str, expected: bytes) -> None:
    assert t.hex_list_transport_id(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("01X", "build_transportid: error at pos 3"),
        ("01 g2", "build_transportid: error at pos 4"),
        (",", "build_transportid: error at pos 1"),
        ("01,,", "build_transportid: error at pos 4"),
        ("01,02,", "build_transportid: error at pos 7"),
        ("100", "build_transportid: hex number larger than 0xff at pos 1"),
        ("01,100", "build_transportid: hex number larger than 0xff at pos 4"),
    ],
)
def test_hex_list_refused(text: str, message: str) -> None:
    with pytest.raises(TransportIdSyntax) as err:
        t.hex_list_transport_id(text)
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


# -- file= lines ---------------------------------------------------------------------------------
def file_tids(lines: list[str]) -> tuple[list[bytes], list[str]]:
    messages: list[str] = []
    return t.file_transport_ids(lines, messages), messages


def test_file_lines() -> None:
    tids, messages = file_tids(
        ["# c\n", "\n", "  \t\n", "sas,5000c50012345678\n", "  01 02,\t03 # x # y\n", "ff"]
    )
    assert tids == [
        b"\x06" + z(3) + bytes.fromhex("5000c50012345678") + z(12),
        b"\x01\x02\x03",
        b"\xff",
    ]
    assert messages == [
        "unable to parse symbolic TransportID: 01 02,\t03 # x # y",
        "unable to parse symbolic TransportID: ff",
    ]


def test_file_only_512_lines_read() -> None:
    assert file_tids(["#\n"] * 512 + ["01\n"]) == ([], [])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("01X\n", "decode_file_tids: syntax error at line 1, pos 3"),
        ("X01\n", "decode_file_tids: syntax error at line 1, pos 1"),
        ("\f01\n", "decode_file_tids: syntax error at line 1, pos 1"),
        ("01\r\n", "decode_file_tids: syntax error at line 1, pos 3"),
        ("  1 z\n", "decode_file_tids: syntax error at line 1, pos 5"),
        ("  100\n", "decode_file_tids: hex number larger than 0xff in line 1, pos 3"),
    ],
)
def test_file_refused(line: str, message: str) -> None:
    with pytest.raises(TransportIdSyntax) as err:
        file_tids([line])
    assert str(err.value) == message


@pytest.mark.parametrize(("line", "pos"), [("  1 100\n", 5), ("01,100\n", 4)])
def test_file_large_number_position_is_the_numbers(line: str, pos: int) -> None:
    """As the real sg_persist says (measured): where the number starts, not the line."""
    with pytest.raises(TransportIdSyntax) as err:
        file_tids([line])
    assert str(err.value) == f"decode_file_tids: hex number larger than 0xff in line 1, pos {pos}"


def test_file_error_line_number() -> None:
    with pytest.raises(TransportIdSyntax) as err:
        file_tids(["01\n", "# c\n", "1ff\n"])
    assert str(err.value) == "decode_file_tids: hex number larger than 0xff in line 3, pos 1"


def test_file_array_length() -> None:
    assert len(file_tids(["01\n"] * 31)[0]) == 31
    with pytest.raises(TransportIdSyntax) as err:
        file_tids(["01\n"] * 32)
    assert str(err.value) == "decode_file_tids: array length exceeded"


# -- packing -------------------------------------------------------------------------------------
def test_compact() -> None:
    sas = b"\x06\x00\x00\x00\x11"
    name = iscsi(b"iqn." + b"n" * 26, 32)
    big = b"\x05\x00\x01\x00" + b"b" * 40
    assert t.compact_transport_ids([sas, name, big]) == (sas + z(19) + name + big + z(256 - 44))
    assert t.compact_transport_ids([b"\x45\x00\x00\x08iqn.x"]) == b"\x45\x00\x00\x08iqn.x" + z(15)
    assert t.compact_transport_ids([b"\x01"] * 33) == (b"\x01" + z(23)) * 32


# -- READ FULL STATUS text -----------------------------------------------------------------------
L = "    "
HEAD = f"{L}Transport Id of initiator:\n"
UNEXP1 = f"{L}  [Unexpected TPID format: 1]\n"
WWN = bytes.fromhex("21000024ff123456")


@pytest.mark.parametrize(
    ("tid", "expected"),
    [
        (z(8) + WWN, f"{HEAD}{L}  FCP-2 World Wide Name:\n{L}21 00 00 24 ff 12 34 56\n"),
        (
            b"\x40" + z(7) + WWN,
            f"{HEAD}{L}  FCP-2 World Wide Name:\n{UNEXP1}{L}21 00 00 24 ff 12 34 56\n",
        ),
        (
            b"\x43" + z(7) + WWN,
            f"{HEAD}{L}  IEEE 1394 EUI-64 name:\n{UNEXP1}{L}21 00 00 24 ff 12 34 56\n",
        ),
        (
            b"\x04" + z(7) + WWN + WWN[::-1],
            f"{HEAD}{L}  RDMA initiator port identifier:\n"
            f"{L}21 00 00 24 ff 12 34 56  56 34 12 ff 24 00 00 21\n",
        ),
        (
            b"\x44" + z(7) + WWN,
            f"{HEAD}{L}  RDMA initiator port identifier:\n{UNEXP1}"
            f"{L}21 00 00 24 ff 12 34 56  00 00 00 00 00 00 00 00\n",
        ),
        (
            b"\x41\x00\x01\x02\x00\x00\x01\x03",
            f"{HEAD}{L}  Parallel SCSI initiator SCSI address: 0x102\n{UNEXP1}"
            f"{L}  relative port number (of corresponding target): 0x103\n",
        ),
        (
            b"\x46\x00\x00\x00" + WWN,
            f"{HEAD}{L}  SAS address: 0x21000024ff123456\n{UNEXP1}",
        ),
        (b"\x06\x00\x00\x00\x50", f"{HEAD}{L}  SAS address: 0x5000000000000000\n"),
        (b"\x0a\x00\x01\x02", f"{HEAD}{L}  SOP Routing ID: 0x102\n"),
        (
            b"\x4a\x00\x01\x02" + b"\xaa" * 30,
            f"{HEAD}{L}  SOP   [Unexpected TPID format: 1]\n"
            f"{L}4a 00 01 02 aa aa aa aa  aa aa aa aa aa aa aa aa\n"
            f"{L}aa aa aa aa aa aa aa aa\n",
        ),
        (b"\x0f", f"{HEAD}{L}  No specified protocol\n"),
        (
            b"\x47\x01",
            f"{HEAD}{L}  ADT:\n{L}  TPID format: 1\n"
            f"{L}47 01 00 00 00 00 00 00  00 00 00 00 00 00 00 00\n"
            f"{L}00 00 00 00 00 00 00 00\n",
        ),
        (
            b"\x02",
            f"{HEAD}{L}  SSA (transport id not defined):\n{L}  TPID format: 0\n"
            f"{L}02 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00\n{L}00 00 00 00 00 00 00 00\n",
        ),
        (
            b"\x8c\x01",
            f"{HEAD}{L}  unknown protocol id=0xc  TPID format=2\n"
            f"{L}8c 01 00 00 00 00 00 00  00 00 00 00 00 00 00 00\n"
            f"{L}00 00 00 00 00 00 00 00\n",
        ),
    ],
)
def test_text_protocols(tid: bytes, expected: str) -> None:
    assert t.transport_id_text(L, tid, 24) == expected


NAME20 = b"iqn.2001-04.com.exam"  # fills ADDITIONAL LENGTH 20 with no NUL


def test_text_iscsi_name() -> None:
    tid = b"\x05\x00\x00\x14" + NAME20 + b"\x06\x07" + z(22)
    assert t.transport_id_text(L, tid, 48) == f"{HEAD}{L}  iSCSI name: iqn.2001-04.com.exam\n"
    tid = b"\x45\x00\x00\x14iqn.a\0zz" + z(12)
    assert t.transport_id_text(L, tid, 24) == f"{HEAD}{L}  iSCSI world wide unique port id: iqn.a\n"
    tid = b"\x05\x00\x00\x14iqn.caf\xc3\xa9" + z(12)  # UTF-8, as RFC 3722 names are
    assert t.transport_id_text(L, tid, 24) == f"{HEAD}{L}  iSCSI name: iqn.café\n"
    tid = b"\x05\x00\x00\x14iqn.\xe9" + z(15)  # not UTF-8: the byte shown, never a wrong letter
    assert t.transport_id_text(L, tid, 24) == f"{HEAD}{L}  iSCSI name: iqn.\\xe9\n"


def test_text_iscsi_long_length() -> None:
    name = b"iqn." + b"q" * 250
    tid = b"\x05\x00\x01\x04" + name + z(6)
    text = t.transport_id_text(L, tid, 264)
    assert text == f"{HEAD}{L}  iSCSI name: {name.decode()}\n"


def test_text_iscsi_bad_format() -> None:
    tid = b"\x85\x00\x00\x14" + NAME20
    assert t.transport_id_text(L, tid, 24) == (
        f"{L}Transport Id of initiator:\n{L}  iSCSI   [Unexpected TPID format: 2]\n"
        f"{L}85 00 00 14 69 71 6e 2e  32 30 30 31 2d 30 34 2e    ....iqn.2001-04.\n"
        f"{L}63 6f 6d 2e 65 78 61 6d                             com.exam        \n"
    )
    # a length beyond the descriptor: the dump runs into the four bytes of zero padding
    tid = b"\xc5\x00\x01\x00" + b"A" * 20
    assert t.transport_id_text("", tid, 24) == (
        "Transport Id of initiator:\n  iSCSI   [Unexpected TPID format: 3]\n"
        "c5 00 01 00 41 41 41 41  41 41 41 41 41 41 41 41    ....AAAAAAAAAAAA\n"
        "41 41 41 41 41 41 41 41  00 00 00 00                AAAAAAAA....    \n"
    )


def test_text_short_tid_padded_with_zeros() -> None:
    assert t.transport_id_text(L, b"\x04\x00", 24) == (
        f"{HEAD}{L}  RDMA initiator port identifier:\n"
        f"{L}00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00\n"
    )


def test_text_short_or_odd_length() -> None:
    short = f"{L}Transport Id short or not multiple of 4 [length=1024]:\n"
    assert t.transport_id_text(L, b"\x0f", 1) == f"{short}{L}  No specified protocol\n"
    assert t.transport_id_text(L, b"\x0f", 26) == f"{short}{L}  No specified protocol\n"
    assert t.transport_id_text(L, b"\x0f", 0) == ""


def test_text_all_descriptors() -> None:
    big = b"\x05\x00\x01\x04" + b"iqn." + b"q" * 250 + z(6)  # 264 bytes
    mid = b"\x05\x00\x00\x20" + b"iqn.mid" + z(25)  # 36 bytes
    sas = b"\x06\x00\x00\x00" + WWN + z(12)
    tid = big + mid + sas + b"\x0f" + z(23)
    first = f"{HEAD}{L}  iSCSI name: iqn.{'q' * 250}\n"
    assert t.transport_id_text(L, tid, len(tid)) == first
    assert t.transport_id_text(L, tid, len(tid), only_one=False) == (
        f"{first}{HEAD}{L}  iSCSI name: iqn.mid\n"
        f"{HEAD}{L}  SAS address: 0x21000024ff123456\n"
        f"{HEAD}{L}  No specified protocol\n"
    )
    # the last one short of 24 bytes
    tail = f"{L}Transport Id short or not multiple of 4 [length=1024]:\n"
    assert t.transport_id_text(L, mid + sas[:8], 44, only_one=False) == (
        f"{HEAD}{L}  iSCSI name: iqn.mid\n{tail}{L}  SAS address: 0x2100002400000000\n"
    )
