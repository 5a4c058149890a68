"""TransportIDs in sg_persist's text forms: read from ``-X`` (``sas,<hex>``, ``iqn.…``, hex byte
lists, ``file=NAME``, ``-`` for stdin; ``decode_sym_transportid``, ``build_transportid``,
``decode_file_tids``), packed into the parameter list (``compact_transportid_array``), and
printed for READ FULL STATUS (``sg_decode_transportid_str``). Every message and its wording is
sg_persist's, so scripts that feed it TransportIDs see what they saw before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.persist.hexdump import hex_text
from scsi_pr.helper.persist.numbers import HEX_DIGITS, scan_hex
from scsi_pr.sim.constants import ProtocolIdentifier

MX_TIDS = 32  # sg_persist's TransportID array
MX_TID_LEN = 256  # and the room for each
TRANSPORT_ID_MIN_LEN = 24


class TransportIdSyntax(HelperError, ValueError):
    """A -X argument sg_persist would refuse; the message is what it prints."""


def _hex_pairs(text: str, count: int) -> bytes:
    return bytes(int(text[i : i + 2], 16) for i in range(0, count, 2))


def _shown(text: str) -> str:
    """``text`` printable as the user typed it: undecodable bytes (surrogate escapes) as
    ``\\xNN``, so the message itself cannot fail to be written."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


# Forms that carry an 8-byte name as 16 hex digits: PROTOCOL IDENTIFIER and where the name
# goes. sg_persist checks "srp," for 16 digits too, though an RDMA port identifier has 16
# bytes: the check is kept and what is there is read.
_NAME_FORMS: dict[str, tuple[ProtocolIdentifier, int]] = {
    "SAS": (ProtocolIdentifier.SAS, 4),
    "FCP": (ProtocolIdentifier.FIBRE_CHANNEL, 8),
    "SBP": (ProtocolIdentifier.IEEE_1394, 8),
    "SRP": (ProtocolIdentifier.SCSI_RDMA, 8),
}


def _form(head: str) -> str:
    """``sas,`` or ``SAS,`` -> ``SAS`` (sg_persist takes a form's name in one case only), else
    an empty string."""
    name = head[:3]
    return name.upper() if head[3:] == "," and name in (name.lower(), name.upper()) else ""


def symbolic_transport_id(text: str, messages: list[str]) -> bytes | None:
    """decode_sym_transportid: ``sas,<16 hex>``, ``fcp,<16 hex>``, ``iqn.…[,i,0x<ISID>]`` and
    the other forms of sg_persist(8) "TRANSPORT IDs"; 24+ bytes, or None (message appended)."""
    tid = bytearray(TRANSPORT_ID_MIN_LEN)
    head, rest = text[:4], text[4:]
    form = _form(head)
    if form in _NAME_FORMS:
        if len(rest) - len(rest.lstrip(HEX_DIGITS)) != 16:
            messages.append(f"badly formed symbolic {form} TransportID: {rest}")
            return None
        protocol, at = _NAME_FORMS[form]
        tid[0] = protocol
        tid[at : at + 8] = _hex_pairs(rest, 16)
        return bytes(tid)
    if form == "SPI":
        parts = rest.split(",")
        try:
            address, port = int(parts[0]), int(parts[1].split()[0] if parts[1] else "x")
        except (ValueError, IndexError):
            messages.append(f"badly formed symbolic SPI TransportID: {rest}")
            return None
        tid[0] = ProtocolIdentifier.PARALLEL_SCSI
        tid[2:4] = (address & 0xFFFF).to_bytes(2, "big")
        tid[6:8] = (port & 0xFFFF).to_bytes(2, "big")
        return bytes(tid)
    if head == "iqn.":
        end = min((i for i in (text.find(" "), text.find("\t")) if i >= 0), default=len(text))
        try:
            name = text[:end].encode()
        except UnicodeEncodeError:
            # bytes that are not UTF-8 (surrogate escapes from argv or stdin): no iSCSI name
            messages.append(f"badly formed symbolic iSCSI TransportID: {_shown(text[:end])}")
            return None
        isid = text.find(",i,0x")
        has_isid = 0 <= isid < end
        alen = max(20, -(-(len(name) + 1) // 4) * 4)
        if alen > 241:
            messages.append(f"iSCSI name too long, alen={alen}")
            return None
        tid = bytearray(max(TRANSPORT_ID_MIN_LEN, 4 + alen))
        tid[0] = ProtocolIdentifier.ISCSI | (0x40 if has_isid else 0)
        tid[3] = alen & 0xFF
        tid[4 : 4 + len(name)] = name
        return bytes(tid)
    if form == "SOP":
        # sg_persist's sscanf("%x") can never return 2 here, so "sop," is always refused
        messages.append(f"badly formed symbolic SOP TransportID: {rest}")
        return None
    messages.append(f"unable to parse symbolic TransportID: {text}")
    return None


def hex_list_transport_id(text: str) -> bytes:
    """A TransportID written as comma/space separated hex bytes (build_transportid)."""
    allowed = HEX_DIGITS + ", "
    k = len(text) - len(text.lstrip(allowed))
    if k != len(text):
        raise TransportIdSyntax(f"build_transportid: error at pos {k + 1}")
    out = bytearray()
    pos = 0
    while True:
        value = scan_hex(text[pos:])
        if value is None:
            raise TransportIdSyntax(f"build_transportid: error at pos {pos + 1}")
        if value > 0xFF:
            raise TransportIdSyntax(
                f"build_transportid: hex number larger than 0xff at pos {pos + 1}"
            )
        out.append(value)
        seps = [i for i in (text.find(",", pos), text.find(" ", pos)) if i >= 0]
        if not seps:
            break
        pos = min(seps) + 1
    return bytes(out)


_HEX_RUN = re.compile(r"[0-9A-Fa-f]+")


def file_transport_ids(lines: Sequence[str], messages: list[str]) -> list[bytes]:
    """decode_file_tids: one TransportID per line, ``#`` comments, hex or symbolic forms.

    ``messages`` receives what sg_persist prints on the way (it tries the symbolic forms first,
    and says so, for every line)."""
    tids: list[bytes] = []
    for lineno, raw in enumerate(lines[:512], start=1):
        line = raw.rstrip("\n")
        stripped = line.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        col = len(line) - len(stripped)
        sym = symbolic_transport_id(stripped, messages)
        if sym is not None:
            tids.append(sym)
        else:
            body = stripped.split("#", 1)[0]
            bad = len(body) - len(body.lstrip(HEX_DIGITS + " ,\t"))
            if bad < len(body):
                raise TransportIdSyntax(
                    f"decode_file_tids: syntax error at line {lineno}, pos {col + bad + 1}"
                )
            out = bytearray()
            for v in _HEX_RUN.finditer(body):  # the body holds hex runs and separators only
                number = int(v[0], 16)
                if number > 0xFF:  # sg_persist names where that number starts
                    raise TransportIdSyntax(
                        f"decode_file_tids: hex number larger than 0xff "
                        f"in line {lineno}, pos {col + v.start() + 1}"
                    )
                out.append(number)
            tids.append(bytes(out))
        if len(tids) >= MX_TIDS:
            raise TransportIdSyntax("decode_file_tids: array length exceeded")
    return tids


def compact_transport_ids(tids: Sequence[bytes]) -> bytes:
    """compact_transportid_array: iSCSI ones take ADDITIONAL LENGTH + 4 (at least 24) bytes,
    every other protocol exactly 24, zero padded."""
    out = bytearray()
    for tid in tids[:MX_TIDS]:
        padded = tid.ljust(MX_TID_LEN, b"\0")
        if padded[0] & 0x0F == ProtocolIdentifier.ISCSI:
            length = max(TRANSPORT_ID_MIN_LEN, int.from_bytes(padded[2:4], "big") + 4)
        else:
            length = TRANSPORT_ID_MIN_LEN
        out += padded[:length]
    return bytes(out)


# -- printing: sg_decode_transportid_str, one describer per PROTOCOL IDENTIFIER ---------------
def _unexpected(leadin: str, fmt: int) -> str:
    return f"{leadin}  [Unexpected TPID format: {fmt}]\n" if fmt else ""


def _word(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _fibre_channel(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    return f"{leadin}  FCP-2 World Wide Name:\n{_unexpected(leadin, fmt)}" + hex_text(
        bp[8:16], leadin, 1
    )


def _parallel_scsi(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    return (
        f"{leadin}  Parallel SCSI initiator SCSI address: 0x{_word(bp[2:4]):x}\n"
        f"{_unexpected(leadin, fmt)}"
        f"{leadin}  relative port number (of corresponding target): 0x{_word(bp[6:8]):x}\n"
    )


def _ieee_1394(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    return f"{leadin}  IEEE 1394 EUI-64 name:\n{_unexpected(leadin, fmt)}" + hex_text(
        bp[8:16], leadin, 1
    )


def _scsi_rdma(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    return f"{leadin}  RDMA initiator port identifier:\n{_unexpected(leadin, fmt)}" + hex_text(
        bp[8:24], leadin, 1
    )


def _iscsi(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    num = _word(bp[2:4])
    # the name's bytes as sg_persist writes them: UTF-8 reads back as typed; bytes that are
    # not UTF-8 (a device's) show as \xNN, so the text can always be written
    name = _shown(bp[4 : 4 + num].partition(b"\0")[0].decode("utf-8", "surrogateescape"))
    if fmt == 0:
        return f"{leadin}  iSCSI name: {name}\n"
    if fmt == 1:
        return f"{leadin}  iSCSI world wide unique port id: {name}\n"
    return f"{leadin}  iSCSI   [Unexpected TPID format: {fmt}]\n" + hex_text(
        bp[: num + 4], leadin, 0
    )


def _sas(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    return f"{leadin}  SAS address: 0x{_word(bp[4:12]):x}\n{_unexpected(leadin, fmt)}"


def _sop(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    if fmt == 0:
        return f"{leadin}  SOP Routing ID: 0x{_word(bp[2:4]):x}\n"
    return f"{leadin}  SOP   [Unexpected TPID format: {fmt}]\n" + hex_text(bp[:normal], leadin, 1)


def _no_protocol(leadin: str, bp: bytes, fmt: int, normal: int) -> str:
    return f"{leadin}  No specified protocol\n"


_DESCRIBE: dict[int, Callable[[str, bytes, int, int], str]] = {
    ProtocolIdentifier.FIBRE_CHANNEL: _fibre_channel,
    ProtocolIdentifier.PARALLEL_SCSI: _parallel_scsi,
    ProtocolIdentifier.IEEE_1394: _ieee_1394,
    ProtocolIdentifier.SCSI_RDMA: _scsi_rdma,
    ProtocolIdentifier.ISCSI: _iscsi,
    ProtocolIdentifier.SAS: _sas,
    ProtocolIdentifier.SOP: _sop,
    ProtocolIdentifier.NONE: _no_protocol,
}
# Protocols without a TransportID layout of their own: a name, the format, then hex.
_OTHER_NAMES: dict[int, str] = {
    ProtocolIdentifier.SSA: "SSA (transport id not defined)",
    ProtocolIdentifier.ADT: "ADT",
    ProtocolIdentifier.ATA: "ATAPI",
    ProtocolIdentifier.UAS: "UAS",
    ProtocolIdentifier.PCIE: "PCIE",
}


def _other(leadin: str, bp: bytes, proto: int, fmt: int, normal: int) -> str:
    if proto in _OTHER_NAMES:
        head = f"{leadin}  {_OTHER_NAMES[proto]}:\n{leadin}  TPID format: {fmt}\n"
    else:
        head = f"{leadin}  unknown protocol id=0x{proto:x}  TPID format={fmt}\n"
    return head + hex_text(bp[:normal], leadin, 1)


def transport_id_text(leadin: str, tid: bytes, length: int, only_one: bool = True) -> str:
    """sg_decode_transportid_str for the TransportIDs of a READ FULL STATUS descriptor."""
    out = []
    data = tid.ljust(max(length, TRANSPORT_ID_MIN_LEN) + 4, b"\0")
    offset, remaining, first = 0, length, True
    while remaining > 0:
        if not first and only_one:
            break
        first = False
        bp = data[offset:]
        if remaining < 24 or remaining % 4:
            # sg3_utils prints its buffer size here (1024), not the TransportID length
            out.append(f"{leadin}Transport Id short or not multiple of 4 [length=1024]:\n")
        else:
            out.append(f"{leadin}Transport Id of initiator:\n")
        fmt, proto = bp[0] >> 6, bp[0] & 0x0F
        normal = min(remaining, TRANSPORT_ID_MIN_LEN)
        describe = _DESCRIBE.get(proto)
        if describe is None:
            out.append(_other(leadin, bp, proto, fmt, normal))
        else:
            out.append(describe(leadin, bp, fmt, normal))
        bump = TRANSPORT_ID_MIN_LEN
        if proto == ProtocolIdentifier.ISCSI:  # the only protocol with a variable length
            bump = max(TRANSPORT_ID_MIN_LEN, _word(bp[2:4]) + 4)
        offset += bump
        remaining -= bump
    return "".join(out)
