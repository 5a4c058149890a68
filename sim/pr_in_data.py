"""Readers of PERSISTENT RESERVE IN parameter data (SPC-5 6.16): the inverse of ``sim.pr_in``.

Everything that reads PR IN data back (the scenario observer, the conformance suite, the
hypothesis machine, the VM end-to-end checks) decodes it here, with the layouts the model's
writers use, into frozen dataclasses.

Strict by default: ADDITIONAL LENGTH must agree with the bytes received, descriptors must fill it
exactly, and a reservation's SCOPE and TYPE must be values SPC-5 defines; anything else raises
``PrInDataError``. Reserved bits are ignored, so data from a later revision still reads.

A reply cut short by a small ALLOCATION LENGTH is legitimate (ADDITIONAL LENGTH still counts
the whole list, SPC-5 6.16.2): ``allow_truncated=True`` accepts data shorter than
ADDITIONAL LENGTH says and returns the items that arrived whole (``complete`` tells whether that
was all of them). The 8-byte header must always be there.

``sg_persist --hex`` prints a list without its header: ``parse_key_list``,
``parse_reservation_descriptor`` and ``parse_full_status_descriptors`` read such a body.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.sim.constants import LU_SCOPE, REPORT_CAPABILITIES_LENGTH, ReservationType
from scsi_pr.sim.errors import SimError
from scsi_pr.sim.pr_in import (
    ALL_TG_PT,
    ALLOW_COMMANDS_MASK,
    ALLOW_COMMANDS_SHIFT,
    ATP_C,
    CRH,
    FULL_STATUS_DESCRIPTOR,
    HEADER,
    KEY,
    PTPL_A,
    PTPL_C,
    R_HOLDER,
    RESERVATION_DESCRIPTOR,
    RLR_C,
    SIP_C,
    TMV,
    TYPE_MASK_BITS,
)
from scsi_pr.sim.transportid import TransportId, TransportIdError, decode_transport_id


class PrInDataError(SimError, ValueError):
    """PR IN parameter data that does not follow SPC-5 6.16; the message says where."""


# -- the data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadKeysData:
    """READ KEYS (SPC-5 6.16.2): one key per registered I_T nexus, in the order reported."""

    generation: int
    keys: tuple[int, ...]
    #: as reported: 8 x the number of registrations, also when the keys were truncated
    additional_length: int

    @property
    def complete(self) -> bool:
        return len(self.keys) * KEY.size == self.additional_length


@dataclass(frozen=True)
class ReservationDescriptor:
    """The persistent reservation as READ RESERVATION shows it (SPC-5 6.16.3). ``key`` is
    zero for the all-registrants types."""

    key: int
    scope: int
    type: ReservationType


@dataclass(frozen=True)
class ReadReservationData:
    """READ RESERVATION (SPC-5 6.16.3). ``reservation`` is None when there is none, or when a
    truncated reply stopped before the descriptor (then ``reserved`` is still True)."""

    generation: int
    additional_length: int
    reservation: ReservationDescriptor | None

    @property
    def reserved(self) -> bool:
        return self.additional_length != 0

    @property
    def complete(self) -> bool:
        return self.reservation is not None or not self.reserved


@dataclass(frozen=True)
class ReportCapabilitiesData:
    """REPORT CAPABILITIES (SPC-5 6.16.4). ``type_mask`` holds the types whose bit is set in
    the PERSISTENT RESERVATION TYPE MASK (meaningful when ``tmv``)."""

    rlr_c: bool
    crh: bool
    sip_c: bool
    atp_c: bool
    ptpl_c: bool
    tmv: bool
    allow_commands: int
    ptpl_a: bool
    type_mask: frozenset[ReservationType]


@dataclass(frozen=True)
class FullStatusDescriptor:
    """One READ FULL STATUS descriptor (SPC-5 6.16.5): a registered I_T nexus.

    ``scope`` and ``type`` are None unless ``r_holder``; ``relative_target_port`` is not
    meaningful when ``all_tg_pt``; ``transport_id`` is the TransportID as reported (decode it
    with ``initiator()``).
    """

    key: int
    all_tg_pt: bool
    r_holder: bool
    scope: int | None
    type: ReservationType | None
    relative_target_port: int
    transport_id: bytes

    def initiator(self) -> TransportId:
        """The TransportID decoded; PrInDataError if the model cannot read it or it does not
        fill its ADDITIONAL DESCRIPTOR LENGTH exactly."""
        try:
            tid, used = decode_transport_id(self.transport_id)
        except TransportIdError as e:
            raise PrInDataError(f"READ FULL STATUS: {e}") from e
        if used != len(self.transport_id):
            raise PrInDataError(
                f"READ FULL STATUS: TransportID of {used} bytes in a descriptor that gives it "
                f"{len(self.transport_id)}"
            )
        return tid


@dataclass(frozen=True)
class ReadFullStatusData:
    """READ FULL STATUS (SPC-5 6.16.5)."""

    generation: int
    descriptors: tuple[FullStatusDescriptor, ...]
    #: as reported: the size of every descriptor, also when some were truncated
    additional_length: int

    @property
    def complete(self) -> bool:
        size = sum(FULL_STATUS_DESCRIPTOR.size + len(d.transport_id) for d in self.descriptors)
        return size == self.additional_length


# -- whole parameter data ---------------------------------------------------------------------
def _header(data: bytes, what: str, allow_truncated: bool) -> tuple[int, int, bytes]:
    """PRGENERATION, ADDITIONAL LENGTH and the bytes after the header."""
    if len(data) < HEADER.size:
        raise PrInDataError(f"{what}: {len(data)} bytes, shorter than the 8-byte header")
    generation, length = HEADER.unpack_from(data)
    body = data[HEADER.size :]
    if len(body) > length:
        raise PrInDataError(
            f"{what}: {len(body)} bytes after the header, ADDITIONAL LENGTH says {length}"
        )
    if len(body) < length and not allow_truncated:
        raise PrInDataError(f"{what}: ADDITIONAL LENGTH {length} runs past the {len(data)} bytes")
    return generation, length, body


def parse_read_keys(data: bytes, *, allow_truncated: bool = False) -> ReadKeysData:
    generation, length, body = _header(data, "READ KEYS", allow_truncated)
    if length % KEY.size:
        raise PrInDataError(f"READ KEYS: ADDITIONAL LENGTH {length} is not a multiple of 8")
    whole = len(body) - len(body) % KEY.size
    return ReadKeysData(generation, parse_key_list(body[:whole]), length)


def parse_read_reservation(data: bytes, *, allow_truncated: bool = False) -> ReadReservationData:
    generation, length, body = _header(data, "READ RESERVATION", allow_truncated)
    if length not in (0, RESERVATION_DESCRIPTOR.size):
        raise PrInDataError(f"READ RESERVATION: descriptor of {length} bytes, need 16")
    if len(body) < length:  # truncated (allowed): the descriptor did not arrive whole
        return ReadReservationData(generation, length, None)
    return ReadReservationData(generation, length, parse_reservation_descriptor(body))


def parse_report_capabilities(data: bytes) -> ReportCapabilitiesData:
    """The 8 bytes of REPORT CAPABILITIES; LENGTH must say 8."""
    if len(data) != REPORT_CAPABILITIES_LENGTH:
        raise PrInDataError(f"REPORT CAPABILITIES: {len(data)} bytes, need 8")
    length = int.from_bytes(data[:2], "big")
    if length != REPORT_CAPABILITIES_LENGTH:
        raise PrInDataError(f"REPORT CAPABILITIES: LENGTH {length}, need 8")
    flags, b3 = data[2], data[3]
    return ReportCapabilitiesData(
        rlr_c=bool(flags & RLR_C),
        crh=bool(flags & CRH),
        sip_c=bool(flags & SIP_C),
        atp_c=bool(flags & ATP_C),
        ptpl_c=bool(flags & PTPL_C),
        tmv=bool(b3 & TMV),
        allow_commands=(b3 >> ALLOW_COMMANDS_SHIFT) & ALLOW_COMMANDS_MASK,
        ptpl_a=bool(b3 & PTPL_A),
        type_mask=frozenset(t for t, (byte, bit) in TYPE_MASK_BITS.items() if data[byte] & bit),
    )


def parse_read_full_status(data: bytes, *, allow_truncated: bool = False) -> ReadFullStatusData:
    generation, length, body = _header(data, "READ FULL STATUS", allow_truncated)
    descriptors = parse_full_status_descriptors(
        body, allow_truncated=allow_truncated and len(body) < length
    )
    return ReadFullStatusData(generation, descriptors, length)


# -- lists without their header (sg_persist --hex) --------------------------------------------
def parse_key_list(body: bytes) -> tuple[int, ...]:
    """READ KEYS' reservation key list."""
    if len(body) % KEY.size:
        raise PrInDataError(f"READ KEYS: key list of {len(body)} bytes is not a multiple of 8")
    return tuple(key for (key,) in KEY.iter_unpack(body))


def parse_reservation_descriptor(body: bytes) -> ReservationDescriptor | None:
    """READ RESERVATION's descriptor: None for no bytes (no reservation)."""
    if not body:
        return None
    if len(body) != RESERVATION_DESCRIPTOR.size:
        raise PrInDataError(f"READ RESERVATION: descriptor of {len(body)} bytes, need 16")
    key, scope_type = RESERVATION_DESCRIPTOR.unpack(body)
    scope, type_ = _scope_type(scope_type, "READ RESERVATION")
    return ReservationDescriptor(key, scope, type_)


def parse_full_status_descriptors(
    body: bytes, *, allow_truncated: bool = False
) -> tuple[FullStatusDescriptor, ...]:
    """READ FULL STATUS descriptors filling ``body`` exactly (or, with ``allow_truncated``,
    those that arrived whole)."""
    out: list[FullStatusDescriptor] = []
    offset = 0
    while offset < len(body):
        fixed_end = offset + FULL_STATUS_DESCRIPTOR.size
        if fixed_end > len(body):
            if allow_truncated:
                break
            raise PrInDataError(
                f"READ FULL STATUS: truncated descriptor at byte {offset}: "
                f"{len(body) - offset} bytes, need at least {FULL_STATUS_DESCRIPTOR.size}"
            )
        key, flags, scope_type, rtpi, tid_length = FULL_STATUS_DESCRIPTOR.unpack_from(body, offset)
        end = fixed_end + tid_length
        if end > len(body):
            if allow_truncated:
                break
            raise PrInDataError(
                f"READ FULL STATUS: TransportID of the descriptor at byte {offset} "
                f"({tid_length} bytes) runs past the data"
            )
        holder = bool(flags & R_HOLDER)
        scope, type_ = _scope_type(scope_type, "READ FULL STATUS") if holder else (None, None)
        out.append(
            FullStatusDescriptor(
                key, bool(flags & ALL_TG_PT), holder, scope, type_, rtpi, body[fixed_end:end]
            )
        )
        offset = end
    return tuple(out)


def _scope_type(value: int, what: str) -> tuple[int, ReservationType]:
    scope, code = value >> 4, value & 0x0F
    if scope != LU_SCOPE:
        raise PrInDataError(f"{what}: SCOPE {scope:#x} is reserved (only LU_SCOPE is defined)")
    try:
        return scope, ReservationType(code)
    except ValueError:
        raise PrInDataError(f"{what}: unknown TYPE {code:#x}") from None
