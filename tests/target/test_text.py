"""Text key segments (RFC 7143 6.1): syntax, limits, values, and segments spanning PDUs."""

from __future__ import annotations

import pytest
from hypothesis import given
from strategies import text_pairs

from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.text import (
    MAX_TEXT_LENGTH,
    TextAccumulator,
    TextError,
    ValueFormatError,
    build_text,
    encode_binary,
    parse_binary,
    parse_boolean,
    parse_list,
    parse_number,
    parse_text,
    split_text,
)


@given(text_pairs)
def test_pairs_round_trip(pairs: tuple[tuple[str, str], ...]) -> None:
    assert parse_text(build_text(pairs)) == pairs


def test_value_may_hold_equals_signs_and_be_empty() -> None:
    assert parse_text(b"A=B=C\0D=\0") == (("A", "B=C"), ("D", ""))


@pytest.mark.parametrize(
    "data",
    [
        b"A" * 63 + b"=1\0",  # the longest key name
        b"A=" + b"v" * 255 + b"\0",  # the longest simple value
        b"CHAP_C=0x" + b"ab" * 1024 + b"\0",  # a 1024-byte binary challenge
        b"iSCSIProtocolLevel=1\0",  # RFC 7144's key starts with a small letter
        b"X-com.example.key=1\0X#IANA=2\0",  # extension keys
    ],
)
def test_within_the_limits(data: bytes) -> None:
    assert parse_text(data)


@pytest.mark.parametrize(
    "data",
    [
        b"A=1",  # no null after the last pair
        b"A1\0",  # no '='
        b"=1\0",  # empty key
        b"1A=1\0",  # key starts with a digit
        b"A B=1\0",  # space in a key
        b"A" * 64 + b"=1\0",  # key too long
        b"A=" + b"v" * 256 + b"\0",  # value too long
        b"CHAP_C=0x" + b"ab" * 1025 + b"\0",  # binary value too long
        b"A=1\0A=2\0",  # key twice
        b"A=\xff\0",  # not UTF-8
        b"A=1\0\0",  # an empty pair
    ],
)
def test_malformed_text_is_a_text_error(data: bytes) -> None:
    with pytest.raises(TextError):
        parse_text(data)


def test_total_length_limit() -> None:
    data = b"".join(b"K%d=%s\0" % (i, b"v" * 200) for i in range(400))
    assert len(data) > MAX_TEXT_LENGTH
    with pytest.raises(TextError):
        parse_text(data)


def test_build_refuses_what_parse_would() -> None:
    with pytest.raises(ValueError):
        build_text([("1bad", "x")])
    with pytest.raises(ValueError):
        build_text([("Key", "a\0b")])


def test_accumulator_joins_c_bit_segments() -> None:
    acc = TextAccumulator()
    assert acc.add(b"Initiator", continues=True) is None
    assert acc.pending
    assert acc.add(b"Name=iqn.x\0Sess", continues=True) is None
    assert acc.add(b"ionType=Normal\0", continues=False) == (
        ("InitiatorName", "iqn.x"),
        ("SessionType", "Normal"),
    )
    assert not acc.pending


def test_accumulator_limit() -> None:
    acc = TextAccumulator(limit=100)
    with pytest.raises(TextError):
        for _ in range(3):
            acc.add(b"A=" + b"x" * 40, continues=True)
    assert not acc.pending


def test_split_sets_c_inside_a_pair() -> None:
    data = build_text([("Key", "value"), ("Other", "x")])  # 10 + 8 bytes
    assert split_text(data, 10) == [(b"Key=value\0", False), (b"Other=x\0", False)]
    assert split_text(data, 7) == [(b"Key=val", True), (b"ue\0Othe", True), (b"r=x\0", False)]
    assert split_text(b"", 8) == [(b"", False)]


@pytest.mark.parametrize(
    ("text", "number"), [("0", 0), ("8192", 8192), ("007", 7), ("0x2000", 8192), ("0X1f", 31)]
)
def test_numbers(text: str, number: int) -> None:
    assert parse_number(text) == number


@pytest.mark.parametrize("text", ["", "-1", "+1", "1.5", "0x", "0xg", "12a", " 1", "Yes"])
def test_not_numbers(text: str) -> None:
    with pytest.raises(ValueFormatError):
        parse_number(text)


def test_number_range() -> None:
    assert parse_number("512", 512, 1024) == 512
    with pytest.raises(ValueFormatError):
        parse_number("511", 512, 1024)


@pytest.mark.parametrize(
    ("text", "raw"),
    [("0x0102", b"\1\2"), ("0X102", b"\1\2"), ("0bAQI=", b"\1\2"), ("0BAQID", b"\1\2\3")],
)
def test_binary_values(text: str, raw: bytes) -> None:
    assert parse_binary(text) == raw


@pytest.mark.parametrize("text", ["0x", "0b", "12", "0xzz", "0b!!", "0x" + "00" * 1025])
def test_not_binary_values(text: str) -> None:
    with pytest.raises(ValueFormatError):
        parse_binary(text)


def test_binary_encoding() -> None:
    assert encode_binary(b"\x00\xff") == "0x00ff"


def test_booleans_and_lists() -> None:
    assert parse_boolean("Yes") is True
    assert parse_boolean("No") is False
    with pytest.raises(ValueFormatError):
        parse_boolean("yes")
    assert parse_list("CRC32C,None") == ["CRC32C", "None"]
    with pytest.raises(ValueFormatError):
        parse_list("CRC32C,,None")


def test_limits_are_inclusive() -> None:
    """A text segment of exactly the limit, a 63-character key, a segment split into 1-byte
    chunks, a 1024-byte binary value: all allowed."""
    exact = b"A=" + b"x" * 97 + b"\0"  # 100 bytes
    assert parse_text(exact, limit=100) == (("A", "x" * 97),)
    key = "K" * 63
    assert parse_text(build_text([(key, "1")])) == ((key, "1"),)
    with pytest.raises(LocalProtocolError):
        build_text([("K" * 64, "1")])
    assert split_text(b"A=1\0", 1)[0] == (b"A", True)
    with pytest.raises(LocalProtocolError, match=r"^chunk size must be positive$"):
        split_text(b"A=1\0", 0)
    assert len(parse_binary("0x" + "ab" * 1024)) == 1024
    acc = TextAccumulator(limit=100)
    assert acc.add(exact, continues=False) == (("A", "x" * 97),)


def test_an_accumulator_parses_with_its_own_limit() -> None:
    big = b"".join(b"K%d=%s\0" % (i, b"v" * 200) for i in range(400))  # over the default
    acc = TextAccumulator(limit=len(big))
    assert acc.add(big, continues=False) is not None


def test_base64_must_be_clean_and_prefixed() -> None:
    for text in ("0bAQ*I=", "12AQI="):  # a stray character; no 0b prefix
        with pytest.raises(ValueFormatError, match=r"is not a binary value$"):
            parse_binary(text)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_text(("K" * 100 + "\0").encode()), repr("K" * 64) + " has no '='"),
        (lambda: parse_text(("1" * 100 + "=x\0").encode()),
         repr("1" * 80) + " is not a valid key name (6.1)"),
        (lambda: parse_number("n" * 50, 0, 1), repr("n" * 40) + " is not a number"),
        (lambda: parse_boolean("y" * 50), repr("y" * 40) + " is not Yes or No"),
        (lambda: parse_binary("0x" + "z" * 50), repr("0x" + "z" * 38) + " is not a binary value"),
        (lambda: parse_binary("q" * 50), repr("q" * 40) + " is not a binary value"),
        (lambda: parse_list("a," * 30), repr("a," * 20) + " has an empty list item"),
        (lambda: parse_text(b"A=\xff\0"), "text is not UTF-8"),
    ],
)  # fmt: skip
def test_text_errors_quote_a_bounded_prefix(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TextError) as caught:
        call()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_text(b"A=1\0" * 30, limit=100), "text segment of 120 bytes exceeds 100"),
        (lambda: parse_text(b"A=1"), "the last key=value pair is not followed by a null (6.1)"),
        (lambda: parse_text(b"A=" + b"v" * 300 + b"\0"), "the value of A is longer than allowed"),
        (lambda: parse_text(b"A=1\0A=2\0"), "A appears twice in one text segment"),
        (lambda: parse_number("5", 6, 9), "5 is outside 6..9"),
        (lambda: parse_binary("0x" + "00" * 1025), "binary value of 1025 bytes is outside 1..1024"),
    ],
)  # fmt: skip
def test_text_errors_say_why(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TextError) as caught:
        call()
    assert str(caught.value) == message


def test_refusals_to_encode_and_to_accumulate_say_why() -> None:
    with pytest.raises(LocalProtocolError, match=r"^cannot encode 'Key'='a\\x00b'$"):
        build_text([("Key", "a\0b")])
    acc = TextAccumulator(limit=10)
    with pytest.raises(TextError, match=r"^text across PDUs exceeds 10 bytes$"):
        acc.add(b"A=" + b"x" * 20, continues=True)
