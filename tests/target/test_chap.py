"""CHAP (RFC 7143 12.1.3 / RFC 1994) against an independent MD5 computation in the test."""

from __future__ import annotations

import hashlib
from itertools import count

import pytest

from scsi_pr.target.proto.chap import (
    AuthenticationFailed,
    ChapAuthenticator,
    ChapCredentials,
    ChapPolicy,
)
from scsi_pr.target.proto.errors import LocalProtocolError

INITIATOR = ChapCredentials("iqn.2024-01.test:host", b"initiator-secret")
TARGET = ChapCredentials("iqn.2024-01.test:target", b"target-secret-0")


def counting_random() -> object:
    """A deterministic source: 0x00, 0x01, 0x02... (identifier first, then the challenge)."""
    counter = count()
    return lambda n: bytes(next(counter) & 0xFF for _ in range(n))


def md5(*parts: bytes) -> bytes:
    return hashlib.md5(b"".join(parts)).digest()


def start(policy: ChapPolicy) -> tuple[ChapAuthenticator, int, bytes]:
    auth = ChapAuthenticator(policy, counting_random())  # type: ignore[arg-type]
    reply = dict(auth.step({"CHAP_A": "7,5"}))
    assert reply["CHAP_A"] == "5"
    identifier, challenge = int(reply["CHAP_I"]), bytes.fromhex(reply["CHAP_C"][2:])
    assert (identifier, challenge) == (0, bytes(range(1, 17)))  # from the source, in order
    return auth, identifier, challenge


def test_one_way() -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR))
    response = md5(bytes([identifier]), INITIATOR.secret, challenge)
    assert auth.step({"CHAP_N": INITIATOR.name, "CHAP_R": "0x" + response.hex()}) == []
    assert auth.done and auth.mutual is False


def test_response_in_base64() -> None:
    import base64

    auth, identifier, challenge = start(ChapPolicy(INITIATOR))
    response = md5(bytes([identifier]), INITIATOR.secret, challenge)
    auth.step({"CHAP_N": INITIATOR.name, "CHAP_R": "0b" + base64.b64encode(response).decode()})
    assert auth.done


def test_mutual() -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR, TARGET))
    theirs = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
    reply = auth.step({
        "CHAP_N": INITIATOR.name,
        "CHAP_R": "0x" + md5(bytes([identifier]), INITIATOR.secret, challenge).hex(),
        "CHAP_I": "77",
        "CHAP_C": "0x" + theirs.hex(),
    })  # fmt: skip
    assert reply == [("CHAP_N", TARGET.name), ("CHAP_R", "0x" + md5(b"\x4d", TARGET.secret,
                                                                     theirs).hex())]  # fmt: skip
    assert auth.done and auth.mutual


def good_response(identifier: int, challenge: bytes) -> dict[str, str]:
    response = md5(bytes([identifier]), INITIATOR.secret, challenge)
    return {"CHAP_N": INITIATOR.name, "CHAP_R": "0x" + response.hex()}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"CHAP_N": "someone-else"}, "CHAP response of 'someone-else' does not match"),
        ({"CHAP_R": "0x" + bytes(16).hex()},
         "CHAP response of 'iqn.2024-01.test:host' does not match"),
        ({"CHAP_R": "not-binary"}, "bad CHAP_R: "),
        ({"CHAP_R": None}, r"expected CHAP_N and CHAP_R, got \['CHAP_N'\]"),
        ({"X": "1"}, r"expected CHAP_N and CHAP_R, got \['CHAP_N', 'CHAP_R', 'X'\]"),
        ({"CHAP_I": "1"}, "CHAP_I and CHAP_C come together, CHAP_A only once"),  # no CHAP_C
        ({"CHAP_A": "5"}, "CHAP_I and CHAP_C come together, CHAP_A only once"),  # again
        ({"CHAP_I": "1", "CHAP_C": "0x0102"},
         "the initiator asks for mutual CHAP; none is configured"),
    ],
)  # fmt: skip
def test_bad_responses_fail(change: dict[str, str | None], why: str) -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR))
    keys = {**good_response(identifier, challenge), **change}
    with pytest.raises(AuthenticationFailed, match=f"^{why}") as caught:
        auth.step({k: v for k, v in keys.items() if v is not None})
    assert caught.value.close_connection and caught.value.reject_reason is None
    assert not auth.done


@pytest.mark.parametrize(
    ("identifier", "why"),
    [("0", None), ("255", None), ("256", "bad mutual CHAP challenge: "), ("x", "bad mutual")],
)
def test_mutual_identifier_is_one_byte(identifier: str, why: str | None) -> None:
    auth, mine, challenge = start(ChapPolicy(INITIATOR, TARGET))
    keys = {**good_response(mine, challenge), "CHAP_I": identifier, "CHAP_C": "0x0102"}
    if why is None:
        theirs = md5(bytes([int(identifier)]), TARGET.secret, b"\x01\x02")
        assert dict(auth.step(keys))["CHAP_R"] == "0x" + theirs.hex()
        return
    with pytest.raises(AuthenticationFailed, match=f"^{why}"):
        auth.step(keys)


def test_reflected_challenge_fails() -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR, TARGET))
    keys = {**good_response(identifier, challenge), "CHAP_I": "1", "CHAP_C": "0x" + challenge.hex()}
    with pytest.raises(
        AuthenticationFailed, match=r"reflected the target's challenge \(12\.1\.3\)$"
    ):
        auth.step(keys)


@pytest.mark.parametrize(
    ("keys", "why"),
    [
        ({"CHAP_A": "7"}, r"CHAP_A offers no MD5 \(5\): \[7\]"),
        ({"CHAP_A": "x"}, "bad CHAP_A: "),
        ({"CHAP_A": "256,5"}, "bad CHAP_A: "),  # algorithms are 0..255
        ({"CHAP_A": "5", "CHAP_N": "n"}, r"expected CHAP_A alone, got \['CHAP_A', 'CHAP_N'\]"),
        ({"CHAP_N": "n"}, r"expected CHAP_A alone, got \['CHAP_N'\]"),
    ],
)
def test_bad_algorithm_step_fails(keys: dict[str, str], why: str) -> None:
    auth = ChapAuthenticator(ChapPolicy(INITIATOR), counting_random())  # type: ignore[arg-type]
    with pytest.raises(AuthenticationFailed, match=f"^{why}"):
        auth.step(keys)


def test_algorithm_zero_is_a_number_like_any_other() -> None:
    auth = ChapAuthenticator(ChapPolicy(INITIATOR), counting_random())  # type: ignore[arg-type]
    assert dict(auth.step({"CHAP_A": "0,5"}))["CHAP_A"] == "5"


@pytest.mark.parametrize(("length", "ok"), [(0, False), (1, True), (1024, True), (1025, False)])
def test_challenge_length_bounds(length: int, ok: bool) -> None:
    random = counting_random()
    if not ok:
        with pytest.raises(LocalProtocolError, match=r"^challenge length outside 1\.\.1024$"):
            ChapAuthenticator(ChapPolicy(INITIATOR), random, length)  # type: ignore[arg-type]
        return
    auth = ChapAuthenticator(ChapPolicy(INITIATOR), random, length)  # type: ignore[arg-type]
    challenge = dict(auth.step({"CHAP_A": "5"}))["CHAP_C"]
    assert len(bytes.fromhex(challenge[2:])) == length


@pytest.mark.parametrize(("name", "secret"), [("", b"secret"), ("n", b""), ("n", "text")])
def test_credentials_need_a_name_and_a_secret(name: str, secret: object) -> None:
    with pytest.raises(LocalProtocolError, match=r"^CHAP credentials need a name and a non-emp"):
        ChapCredentials(name, secret)  # type: ignore[arg-type]


def test_keys_after_the_end_fail() -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR))
    auth.step(good_response(identifier, challenge))
    assert auth.step({}) == []
    with pytest.raises(AuthenticationFailed, match=r"^CHAP keys after the exchange ended$"):
        auth.step({"CHAP_A": "5"})


def test_policy_needs_distinct_secrets_and_hides_them() -> None:
    with pytest.raises(LocalProtocolError, match=r"^mutual CHAP needs distinct secrets each way"):
        ChapPolicy(INITIATOR, ChapCredentials("t", INITIATOR.secret))
    assert "initiator-secret" not in repr(ChapPolicy(INITIATOR, TARGET))
