"""Text keys (RFC 7143 6.1): ``key=value\\0`` pairs in Login and Text data segments.

A logical text data segment may span several PDUs (the C bit); ``TextAccumulator`` joins them
and parses once the last one (C=0) arrives. Parsing enforces the RFC's syntax and this target's
limits: key names of at most 63 characters starting with a letter (a capital one, except RFC
7144's ``iSCSIProtocolLevel``), values of at most 255 bytes (the RFC's default for a
simple-value) except CHAP's binary values (up to 1024 bytes), at most ``MAX_TEXT_LENGTH`` bytes
in one logical segment, and no key twice in one segment.

Values: numbers are decimal or ``0x`` hex constants; binary values ``0x`` hex or ``0b`` base64
(6.1); booleans ``Yes``/``No``; lists are comma separated. ``NotUnderstood``, ``Irrelevant`` and
``Reject`` are the answers 6.2 defines.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from scsi_pr.target.proto.constants import RejectReason
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError

NOT_UNDERSTOOD = "NotUnderstood"
IRRELEVANT = "Irrelevant"
REJECT = "Reject"
YES, NO = "Yes", "No"

MAX_KEY_LENGTH = 63  # 6.1: standard-label
MAX_VALUE_LENGTH = 255  # 6.1: simple-value, unless the key says otherwise
MAX_TEXT_LENGTH = 64 * 1024  # this target's limit on one logical text data segment
MAX_BINARY_LENGTH = 1024  # 12.1.3: CHAP_C / CHAP_R binary values
MAX_NAME_LENGTH = 223  # 4.2.7.1: iSCSI names
#: keys whose values may exceed 255 bytes, with their limit in characters
LONG_VALUES = {"CHAP_C": 2 + 2 * MAX_BINARY_LENGTH, "CHAP_R": 2 + 2 * MAX_BINARY_LENGTH}

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9.+@_#-]*")  # RFC 7144 added iSCSIProtocolLevel
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")

Pairs = tuple[tuple[str, str], ...]


class TextError(RemoteProtocolError):
    """The text data segment breaks 6.1 (syntax, a limit, a repeated key).

    In full feature phase the Text Request is rejected (PROTOCOL_ERROR); during login the
    login machine answers with a login failure instead.
    """

    reject_reason = RejectReason.PROTOCOL_ERROR


class ValueFormatError(TextError):
    """A value is not of the type its key needs (number, boolean, binary)."""


def parse_text(data: bytes, *, limit: int = MAX_TEXT_LENGTH) -> Pairs:
    """The ``(key, value)`` pairs of one whole logical text data segment, in order."""
    if len(data) > limit:
        raise TextError(f"text segment of {len(data)} bytes exceeds {limit}")
    if not data:
        return ()
    if not data.endswith(b"\0"):
        raise TextError("the last key=value pair is not followed by a null (6.1)")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in data[:-1].split(b"\0"):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TextError("text is not UTF-8") from e
        key, sep, value = text.partition("=")
        if not sep:
            raise TextError(f"{text[:64]!r} has no '='")
        check_key(key)
        if len(value.encode()) > LONG_VALUES.get(key, MAX_VALUE_LENGTH):
            raise TextError(f"the value of {key} is longer than allowed")
        if key in seen:
            raise TextError(f"{key} appears twice in one text segment")
        seen.add(key)
        pairs.append((key, value))
    return tuple(pairs)


def check_key(key: str) -> None:
    if not _KEY.fullmatch(key) or len(key) > MAX_KEY_LENGTH:
        raise TextError(f"{key[:80]!r} is not a valid key name (6.1)")


def build_text(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The data segment for ``pairs`` (each followed by a null)."""
    out = bytearray()
    for key, value in pairs:
        if not _KEY.fullmatch(key) or len(key) > MAX_KEY_LENGTH or "\0" in value:
            raise LocalProtocolError(f"cannot encode {key!r}={value!r}")
        out += f"{key}={value}".encode() + b"\0"
    return bytes(out)


class TextAccumulator:
    """Joins the data segments of a C-bit sequence into one logical text data segment."""

    def __init__(self, limit: int = MAX_TEXT_LENGTH) -> None:
        self.limit = limit
        self._parts = bytearray()

    @property
    def pending(self) -> bool:
        """Whether part of a segment has arrived and its end (C=0) has not."""
        return bool(self._parts)

    def add(self, data: bytes, continues: bool) -> Pairs | None:
        """Add one PDU's data; the parsed pairs once ``continues`` is False, else None."""
        self._parts += data
        if len(self._parts) > self.limit:
            self._parts.clear()
            raise TextError(f"text across PDUs exceeds {self.limit} bytes")
        if continues:
            return None
        whole, self._parts = bytes(self._parts), bytearray()
        return parse_text(whole, limit=self.limit)


def split_text(data: bytes, size: int) -> list[tuple[bytes, bool]]:
    """Cut a text segment into PDUs of at most ``size`` bytes: ``(chunk, continues)`` pairs.

    ``continues`` is the C bit: set when the chunk ends inside a key=value pair (6.1).
    """
    if size <= 0:
        raise LocalProtocolError("chunk size must be positive")
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [(chunk, not chunk.endswith(b"\0") and bool(chunk)) for chunk in chunks]


# -- values --------------------------------------------------------------------------------
def parse_number(value: str, low: int = 0, high: int = (1 << 64) - 1) -> int:
    """A numerical-value (decimal or hex constant) within ``low..high``."""
    if _DECIMAL.fullmatch(value):
        number = int(value)
    elif _HEX.fullmatch(value):
        number = int(value[2:], 16)
    else:
        raise ValueFormatError(f"{value[:40]!r} is not a number")
    if not low <= number <= high:
        raise ValueFormatError(f"{number} is outside {low}..{high}")
    return number


def parse_boolean(value: str) -> bool:
    if value not in (YES, NO):
        raise ValueFormatError(f"{value[:40]!r} is not Yes or No")
    return value == YES


def encode_boolean(value: bool) -> str:
    return YES if value else NO


def parse_binary(value: str, max_length: int = MAX_BINARY_LENGTH) -> bytes:
    """A binary-value: ``0x`` hex (an odd digit count has an implied leading 0) or ``0b`` base64."""
    prefix, body = value[:2].lower(), value[2:]
    try:
        if prefix == "0x" and body:
            raw = binascii.unhexlify(body if len(body) % 2 == 0 else "0" + body)
        elif prefix == "0b" and body:
            raw = base64.b64decode(body, validate=True)
        else:
            raise ValueFormatError(f"{value[:40]!r} is not a binary value")
    except (binascii.Error, ValueError) as e:
        raise ValueFormatError(f"{value[:40]!r} is not a binary value") from e
    if not raw or len(raw) > max_length:
        raise ValueFormatError(f"binary value of {len(raw)} bytes is outside 1..{max_length}")
    return raw


def encode_binary(raw: bytes) -> str:
    return "0x" + raw.hex()


def parse_list(value: str) -> list[str]:
    """A list-of-values (6.1: comma separated, none empty)."""
    items = value.split(",")
    if any(not item for item in items):
        raise ValueFormatError(f"{value[:40]!r} has an empty list item")
    return items
