"""Operational text keys (RFC 7143 chapter 13) and how the target answers each offer.

One table row per key: its result function (6.2: list, minimum, maximum, AND, OR, or a
declaration that needs no answer), its default, its range, and whether it is irrelevant in a
discovery session. ``Negotiator`` answers the initiator's offers by those rules against the
target's ``OperationalSettings``, makes the target's own offers where the RFC default would not
suit the target (e.g. ``ImmediateData=No``), checks the initiator's answers to them, and yields
the result as one frozen ``SessionParameters`` once login is over.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from scsi_pr.target.proto.constants import DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH, MAX_24
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.text import (
    IRRELEVANT,
    NOT_UNDERSTOOD,
    REJECT,
    TextError,
    ValueFormatError,
    encode_boolean,
    parse_boolean,
    parse_list,
    parse_number,
)

NONE, CRC32C = "None", "CRC32C"
ISCSI_PROTOCOL_LEVEL = 1  # RFC 7144 2.1: the level of RFC 7143
#: keys RFC 7143 13.25 obsoletes: answered "No" (markers) or "Reject" (intervals), never
#: "NotUnderstood"
OBSOLETE_KEYS = {"IFMarker": "No", "OFMarker": "No", "IFMarkInt": REJECT, "OFMarkInt": REJECT}


class Rule(Enum):
    """6.2 / 13: how a key's result follows from the offer and the responder's value."""

    LIST = "list"
    MINIMUM = "minimum"
    MAXIMUM = "maximum"
    AND = "and"
    OR = "or"
    DECLARATIVE = "declarative"


@dataclass(frozen=True)
class KeySpec:
    key: str
    rule: Rule
    default: str
    attribute: str  # the SessionParameters / OperationalSettings field
    low: int = 0
    high: int = 0
    discovery_irrelevant: bool = False


KEYS: dict[str, KeySpec] = {
    s.key: s
    for s in (
        KeySpec("HeaderDigest", Rule.LIST, NONE, "header_digest"),  # 13.1
        KeySpec("DataDigest", Rule.LIST, NONE, "data_digest"),  # 13.1
        KeySpec("MaxConnections", Rule.MINIMUM, "1", "max_connections", 1, 65535, True),  # 13.2
        KeySpec("InitialR2T", Rule.OR, "Yes", "initial_r2t", discovery_irrelevant=True),  # 13.10
        KeySpec("ImmediateData", Rule.AND, "Yes", "immediate_data", discovery_irrelevant=True),
        KeySpec(
            "MaxRecvDataSegmentLength",
            Rule.DECLARATIVE,
            "8192",  # 13.12
            "max_recv_data_segment_length",
            512,
            MAX_24,
        ),
        KeySpec("MaxBurstLength", Rule.MINIMUM, "262144", "max_burst_length", 512, MAX_24, True),
        KeySpec("FirstBurstLength", Rule.MINIMUM, "65536", "first_burst_length", 512, MAX_24, True),
        KeySpec("DefaultTime2Wait", Rule.MAXIMUM, "2", "default_time2wait", 0, 3600),  # 13.15
        KeySpec("DefaultTime2Retain", Rule.MINIMUM, "20", "default_time2retain", 0, 3600),
        KeySpec("MaxOutstandingR2T", Rule.MINIMUM, "1", "max_outstanding_r2t", 1, 65535, True),
        KeySpec("DataPDUInOrder", Rule.OR, "Yes", "data_pdu_in_order", discovery_irrelevant=True),
        KeySpec(
            "DataSequenceInOrder",
            Rule.OR,
            "Yes",
            "data_sequence_in_order",
            discovery_irrelevant=True,
        ),
        KeySpec("ErrorRecoveryLevel", Rule.MINIMUM, "0", "error_recovery_level", 0, 2),  # 13.20
        KeySpec(
            "TaskReporting",
            Rule.LIST,
            "RFC3720",
            "task_reporting",  # 13.23
            discovery_irrelevant=True,
        ),
        KeySpec("iSCSIProtocolLevel", Rule.MINIMUM, "0", "iscsi_protocol_level", 0, 31),
    )
}


class NegotiationError(TextError):
    """The initiator negotiated a key twice, answered our offer wrongly, or declared nonsense.

    During login this is a login failure (11.13.5: initiator error).
    """


@dataclass(frozen=True)
class OperationalSettings:
    """What this target accepts; the responder's side of every answer.

    Lists are the values accepted, in no particular order (the initiator's order decides,
    6.2.1). ``max_recv_data_segment_length`` is what the target declares it can receive.
    """

    header_digest: tuple[str, ...] = (NONE, CRC32C)
    data_digest: tuple[str, ...] = (NONE, CRC32C)
    max_connections: int = 1
    initial_r2t: bool = False
    immediate_data: bool = True
    max_recv_data_segment_length: int = 65536
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True  # the collectors need in-order data
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    task_reporting: tuple[str, ...] = ("RFC3720",)
    iscsi_protocol_level: int = ISCSI_PROTOCOL_LEVEL

    def __post_init__(self) -> None:
        for spec in KEYS.values():
            value = getattr(self, spec.attribute)
            numeric = spec.rule in (Rule.MINIMUM, Rule.MAXIMUM, Rule.DECLARATIVE)
            if numeric and not spec.low <= value <= spec.high:
                raise LocalProtocolError(f"{spec.key}={value} is outside its range")
        if self.first_burst_length > self.max_burst_length:
            raise LocalProtocolError("FirstBurstLength must not exceed MaxBurstLength (13.14)")
        if self.error_recovery_level != 0 or not (self.data_pdu_in_order
                                                  and self.data_sequence_in_order):  # fmt: skip
            raise LocalProtocolError("this target implements ErrorRecoveryLevel 0, data in order")


@dataclass(frozen=True)
class SessionParameters:
    """The outcome of a login: negotiated keys, both data segment limits, the session's names.

    ``max_recv_data_segment_length`` is the initiator's (the most the target may send in one
    PDU); ``target_max_recv_data_segment_length`` the target's own declaration.
    """

    initiator_name: str
    isid: int
    session_type: str = "Normal"
    target_name: str | None = None
    initiator_alias: str | None = None
    target_portal_group_tag: int = 1
    tsih: int = 0
    cid: int = 0
    header_digest: bool = False
    data_digest: bool = False
    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    max_recv_data_segment_length: int = DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH
    target_max_recv_data_segment_length: int = DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    task_reporting: str = "RFC3720"
    iscsi_protocol_level: int = 0

    def __post_init__(self) -> None:
        if self.first_burst_length > self.max_burst_length:
            raise LocalProtocolError("FirstBurstLength exceeds MaxBurstLength (13.14)")
        for name in ("max_recv_data_segment_length", "target_max_recv_data_segment_length"):
            if not 512 <= getattr(self, name) <= MAX_24:
                raise LocalProtocolError(f"{name} is outside 512..2**24-1")

    @property
    def discovery(self) -> bool:
        return self.session_type == "Discovery"


def _answer(spec: KeySpec, offered: str, ours: Any) -> tuple[str | None, Any]:
    """The answer to one offer and the resulting value (None: the key keeps its default)."""
    if spec.rule is Rule.LIST:
        chosen = next((v for v in parse_list(offered) if v in ours), None)
        return (REJECT, None) if chosen is None else (chosen, chosen)
    if spec.rule in (Rule.AND, Rule.OR):
        value = parse_boolean(offered)
        result = value and ours if spec.rule is Rule.AND else value or ours
        return encode_boolean(result), result
    value = parse_number(offered, spec.low, spec.high)
    if spec.rule is Rule.DECLARATIVE:
        return None, value
    result = min(value, ours) if spec.rule is Rule.MINIMUM else max(value, ours)
    return str(result), result


def _default(spec: KeySpec) -> Any:
    if spec.rule in (Rule.AND, Rule.OR):
        return spec.default == "Yes"
    if spec.rule is Rule.LIST:
        return spec.default
    return int(spec.default)


class Negotiator:
    """Answers operational keys for one login; ``parameters()`` gives the outcome."""

    def __init__(self, settings: OperationalSettings, *, discovery: bool = False) -> None:
        self.settings = settings
        self.discovery = discovery
        self._results: dict[str, Any] = {}
        self._seen: set[str] = set()
        self._offered: dict[str, Any] = {}  # our offers awaiting the initiator's answer
        self._declared = False

    def respond(self, key: str, value: str) -> str | None:
        """The answer to the initiator's ``key=value`` (None: nothing to answer)."""
        spec = KEYS.get(key)
        if spec is not None and key in self._offered:
            self._check_answer(spec, value)
            return None
        if key in self._seen:
            raise NegotiationError(f"{key} negotiated twice in one login (6.3)")
        self._seen.add(key)
        if key in OBSOLETE_KEYS:
            return OBSOLETE_KEYS[key]
        if spec is None:
            return NOT_UNDERSTOOD
        if self.discovery and spec.discovery_irrelevant:
            return IRRELEVANT
        try:
            answer, result = _answer(spec, value, self._limit(spec))
        except ValueFormatError as e:
            if spec.rule is Rule.DECLARATIVE:
                raise NegotiationError(f"{key}={value[:40]!r}: {e}") from e
            return REJECT
        if result is not None:
            self._results[spec.attribute] = result
        return answer

    def _check_answer(self, spec: KeySpec, value: str) -> None:
        """The initiator's answer to our offer must be a result our offer allows (6.2)."""
        ours = self._offered.pop(spec.key)
        try:
            if spec.rule is Rule.LIST:
                result: Any = value
                allowed = value in ours
            elif spec.rule is Rule.AND:
                result = parse_boolean(value)
                allowed = ours or not result
            else:  # MINIMUM: the only other rule the target offers
                result = parse_number(value, spec.low, spec.high)
                allowed = result <= ours
        except ValueFormatError as e:
            raise NegotiationError(f"bad answer {spec.key}={value[:40]!r}") from e
        if not allowed:
            raise NegotiationError(f"{spec.key}={value} does not answer our offer {ours!r}")
        self._results[spec.attribute] = result

    def offers(self) -> list[tuple[str, str]]:
        """The target's own declarations and offers not sent yet (and now counted as sent).

        The MaxRecvDataSegmentLength declaration always; an offer for each key the initiator
        has not negotiated whose RFC default the target cannot accept.
        """
        out: list[tuple[str, str]] = []
        if not self._declared:
            self._declared = True
            declared = self.settings.max_recv_data_segment_length
            out.append(("MaxRecvDataSegmentLength", str(declared)))
        for spec in KEYS.values():
            if spec.key in self._seen or spec.rule is Rule.DECLARATIVE:  # offered: seen too
                continue
            if self.discovery and spec.discovery_irrelevant:
                continue
            offer = self._own_offer(spec)
            if offer is not None:
                self._offered[spec.key] = self._limit(spec)
                self._seen.add(spec.key)
                out.append((spec.key, offer))
        return out

    def _limit(self, spec: KeySpec) -> Any:
        """What the target accepts for ``spec`` given the keys settled so far.

        FirstBurstLength must not exceed MaxBurstLength (13.14): an initiator offering
        MaxBurstLength below 65536 without FirstBurstLength (open-iscsi with InitialR2T=Yes and
        ImmediateData=No) gets a FirstBurstLength offer that fits, and an initiator offering
        both out of order gets an answer that fits.
        """
        ours = getattr(self.settings, spec.attribute)
        if spec.key == "FirstBurstLength":
            max_burst = self._results.get("max_burst_length", _default(KEYS["MaxBurstLength"]))
            return min(ours, max_burst)
        return ours

    def _own_offer(self, spec: KeySpec) -> str | None:
        """Our offer for ``spec`` when its default does not suit us, else None."""
        ours, default = self._limit(spec), _default(spec)
        if spec.rule is Rule.LIST:
            return None if default in ours else ",".join(ours)
        if spec.rule is Rule.AND:
            return None if default <= ours else encode_boolean(ours)
        if spec.rule is Rule.MINIMUM:
            return None if default <= ours else str(ours)
        return None  # OR and MAXIMUM defaults are never worse than what we accept

    def needs_offers(self) -> bool:
        """Whether the target must offer keys itself (so login must pass the operational stage)."""
        return any(
            self._own_offer(spec) is not None
            for spec in KEYS.values()
            if spec.key not in self._seen
            and spec.rule is not Rule.DECLARATIVE
            and not (self.discovery and spec.discovery_irrelevant)
        )

    @property
    def awaiting_answers(self) -> bool:
        """Whether the target offered keys the initiator has not answered yet."""
        return bool(self._offered)

    def parameters(self, **identity: Any) -> SessionParameters:
        """The negotiated outcome plus ``identity`` fields (names, ISID, TSIH...)."""
        values: dict[str, Any] = {}
        for spec in KEYS.values():
            result = self._results.get(spec.attribute, _default(spec))
            if spec.rule is Rule.LIST:
                if result not in getattr(self.settings, spec.attribute):
                    raise NegotiationError(f"{spec.key}={result} is not acceptable here")
                if spec.attribute.endswith("digest"):
                    result = result == CRC32C
            values[spec.attribute] = result
        if self._declared:  # else the initiator assumes the default, as SessionParameters does
            declared = self.settings.max_recv_data_segment_length
            values["target_max_recv_data_segment_length"] = declared
        names = {f.name for f in fields(SessionParameters)}
        try:
            return SessionParameters(**{k: v for k, v in values.items() if k in names}, **identity)
        except LocalProtocolError as e:
            raise NegotiationError(str(e)) from e
