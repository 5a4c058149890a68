"""TransportIDs (SPC-5 7.6.4): the identity of an initiator port inside PR parameter data.

Three protocols are modelled because they are the ones PR users meet: Fibre Channel (24 bytes,
N_Port name), SAS (24 bytes, SAS address; what LIO's tcm_loop reports) and iSCSI in both formats
(00b = initiator device name, 01b = initiator port name with ``,i,0x<ISID>``).

Comparison follows SPC-5 7.6.4 (the iSCSI TransportID): iSCSI names compare case-insensitively,
and a format 00b TransportID names every port of that iSCSI device.
"""

from __future__ import annotations

from typing import NamedTuple

from scsi_pr.sim.constants import ProtocolIdentifier
from scsi_pr.sim.errors import SimError

FIXED_TRANSPORT_ID_LENGTH = 24
ISCSI_MIN_ADDITIONAL_LENGTH = 20  # SPC-5 7.6.4: at least 20 and a multiple of 4
ISCSI_SEPARATOR = ",i,0x"


class TransportIdError(SimError, ValueError):
    """The bytes (or text) do not form a TransportID this model understands."""


class TransportId(NamedTuple):
    """One initiator port identity.

    ``name`` is the canonical text: ``naa.<16 hex>`` for SAS, ``<16 hex>`` for FC and the iSCSI
    name for iSCSI; ``isid`` is the 12-hex-digit ISID of an iSCSI port (format 01b) or None.

    A NamedTuple, as ``ITNexus`` is: I_T nexuses key every PR table, and a tuple hashes and
    compares in C where a frozen dataclass runs Python for each (the model's PR OUT rate,
    issue 14). Build one with the constructors below, which check and canonicalise.
    """

    protocol: ProtocolIdentifier
    name: str
    isid: str | None = None

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def sas(cls, address: int | str) -> TransportId:
        try:
            value = int(address.removeprefix("naa."), 16) if isinstance(address, str) else address
        except ValueError:
            raise TransportIdError(f"bad SAS address: {address!r}") from None
        if not 0 <= value < 1 << 64:
            raise TransportIdError(f"SAS address out of range: {address!r}")
        return cls(ProtocolIdentifier.SAS, f"naa.{value:016x}")

    @classmethod
    def fibre_channel(cls, port_name: int | str) -> TransportId:
        text = port_name.replace(":", "") if isinstance(port_name, str) else f"{port_name:016x}"
        try:
            value = int(text, 16)
        except ValueError as e:
            raise TransportIdError(f"bad N_Port name: {port_name!r}") from e
        if not 0 <= value < 1 << 64:
            raise TransportIdError(f"N_Port name out of range: {port_name!r}")
        return cls(ProtocolIdentifier.FIBRE_CHANNEL, f"{value:016x}")

    @classmethod
    def iscsi(cls, name: str, isid: int | str | None = None) -> TransportId:
        if not name or any(c in name for c in "\0,") or not name.isascii():
            raise TransportIdError(f"bad iSCSI name: {name!r}")
        if isid is not None:
            try:
                value = int(isid, 16) if isinstance(isid, str) else isid
            except ValueError:
                raise TransportIdError(f"bad ISID: {isid!r}") from None
            if not 0 <= value < 1 << 48:
                raise TransportIdError(f"ISID out of range: {isid!r}")
            isid = f"{value:012x}"
        return cls(ProtocolIdentifier.ISCSI, name.lower(), isid)

    @classmethod
    def from_name(cls, text: str) -> TransportId:
        """Parse the human forms: ``naa.<hex>`` (SAS), ``fc.<hex>`` or ``xx:xx:..`` (FC),
        ``iqn.…``/``eui.…`` with optional ``,i,0x<ISID>`` (iSCSI)."""
        if text.startswith("naa."):
            return cls.sas(text)
        if text.startswith("fc."):
            return cls.fibre_channel(text[3:])
        if text.count(":") == 7:
            return cls.fibre_channel(text)
        if text.startswith(("iqn.", "eui.")):
            name, sep, isid = text.partition(ISCSI_SEPARATOR)
            return cls.iscsi(name, isid if sep else None)
        raise TransportIdError(
            f"cannot tell the protocol of initiator {text!r}: "
            "use naa.<16 hex> (SAS), fc.<16 hex> (FC) or iqn.… (iSCSI)"
        )

    # -- wire form ----------------------------------------------------------------------
    def encode(self) -> bytes:
        if self.protocol == ProtocolIdentifier.SAS:
            out = bytearray(FIXED_TRANSPORT_ID_LENGTH)
            out[0] = ProtocolIdentifier.SAS
            out[4:12] = int(self.name[4:], 16).to_bytes(8, "big")
            return bytes(out)
        if self.protocol == ProtocolIdentifier.FIBRE_CHANNEL:
            out = bytearray(FIXED_TRANSPORT_ID_LENGTH)
            out[8:16] = int(self.name, 16).to_bytes(8, "big")
            return bytes(out)
        text = self.name if self.isid is None else f"{self.name}{ISCSI_SEPARATOR}{self.isid}"
        body = text.encode("ascii") + b"\0"
        length = max(ISCSI_MIN_ADDITIONAL_LENGTH, -(-len(body) // 4) * 4)
        fmt = 0x40 if self.isid is not None else 0x00
        header = bytes([fmt | ProtocolIdentifier.ISCSI, 0]) + length.to_bytes(2, "big")
        return header + body.ljust(length, b"\0")

    def matches(self, other: TransportId) -> bool:
        """Does this TransportID (as sent by an application client) name port ``other``?

        A format 00b iSCSI TransportID names every port of the device (SPC-5 7.6.4).
        """
        if self.protocol != other.protocol or self.name != other.name:
            return False
        return self.isid is None or self.isid == other.isid

    def __str__(self) -> str:
        if self.protocol == ProtocolIdentifier.ISCSI and self.isid is not None:
            return f"{self.name}{ISCSI_SEPARATOR}{self.isid}"
        if self.protocol == ProtocolIdentifier.FIBRE_CHANNEL:
            return "fc." + self.name
        return self.name


def decode_transport_id(data: bytes, offset: int = 0) -> tuple[TransportId, int]:
    """Decode one TransportID at ``offset``; return it and its length in bytes.

    Raises TransportIdError for a protocol or format the model does not support, a length that
    runs past ``data``, or a malformed iSCSI name.
    """
    if offset + 4 > len(data):
        raise TransportIdError("TransportID truncated")
    fmt, protocol = data[offset] >> 6, data[offset] & 0x0F
    if protocol in (ProtocolIdentifier.SAS, ProtocolIdentifier.FIBRE_CHANNEL):
        end = offset + FIXED_TRANSPORT_ID_LENGTH
        if fmt != 0 or end > len(data):
            raise TransportIdError("bad fixed-length TransportID")
        if protocol == ProtocolIdentifier.SAS:
            return TransportId.sas(int.from_bytes(data[offset + 4 : offset + 12], "big")), 24
        return TransportId.fibre_channel(int.from_bytes(data[offset + 8 : offset + 16], "big")), 24
    if protocol != ProtocolIdentifier.ISCSI or fmt not in (0, 1):
        raise TransportIdError(f"unsupported TransportID protocol {protocol:#x} format {fmt}")
    length = int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = offset + 4 + length
    if length % 4 or length < 4 or end > len(data):
        raise TransportIdError("bad iSCSI TransportID ADDITIONAL LENGTH")
    raw = data[offset + 4 : end]
    text_bytes, nul, _ = raw.partition(b"\0")
    if not nul:
        raise TransportIdError("iSCSI name is not NUL-terminated")
    try:
        text = text_bytes.decode("ascii")
    except UnicodeDecodeError as e:
        raise TransportIdError("iSCSI name is not ASCII") from e
    if fmt == 1:
        name, sep, isid = text.partition(ISCSI_SEPARATOR)
        if not sep or len(isid) != 12:
            raise TransportIdError("format 01b iSCSI TransportID without ',i,0x<ISID>'")
        return TransportId.iscsi(name, isid), 4 + length
    return TransportId.iscsi(text), 4 + length


def decode_transport_id_list(data: bytes) -> list[TransportId]:
    """Decode back-to-back TransportIDs filling ``data`` exactly."""
    out: list[TransportId] = []
    offset = 0
    while offset < len(data):
        tid, used = decode_transport_id(data, offset)
        out.append(tid)
        offset += used
    return out
