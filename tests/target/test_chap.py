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
    assert auth.done and not auth.mutual


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
    "change",
    [
        {"CHAP_N": "someone-else"},
        {"CHAP_R": "0x" + bytes(16).hex()},
        {"CHAP_R": "not-binary"},
        {"CHAP_R": None},
        {"CHAP_I": "1"},  # CHAP_I without CHAP_C
        {"CHAP_A": "5"},  # CHAP_A again
        {"CHAP_I": "1", "CHAP_C": "0x0102"},  # mutual, but no target credentials configured
    ],
)
def test_bad_responses_fail(change: dict[str, str | None]) -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR))
    keys = {**good_response(identifier, challenge), **change}
    with pytest.raises(AuthenticationFailed) as caught:
        auth.step({k: v for k, v in keys.items() if v is not None})
    assert caught.value.close_connection and caught.value.reject_reason is None


def test_reflected_challenge_fails() -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR, TARGET))
    keys = {**good_response(identifier, challenge), "CHAP_I": "1", "CHAP_C": "0x" + challenge.hex()}
    with pytest.raises(AuthenticationFailed):
        auth.step(keys)


@pytest.mark.parametrize(
    "keys", [{"CHAP_A": "7"}, {"CHAP_A": "x"}, {"CHAP_A": "5", "CHAP_N": "n"}, {"CHAP_N": "n"}]
)
def test_bad_algorithm_step_fails(keys: dict[str, str]) -> None:
    auth = ChapAuthenticator(ChapPolicy(INITIATOR), counting_random())  # type: ignore[arg-type]
    with pytest.raises(AuthenticationFailed):
        auth.step(keys)


def test_keys_after_the_end_fail() -> None:
    auth, identifier, challenge = start(ChapPolicy(INITIATOR))
    auth.step(good_response(identifier, challenge))
    assert auth.step({}) == []
    with pytest.raises(AuthenticationFailed):
        auth.step({"CHAP_A": "5"})


def test_policy_needs_distinct_secrets_and_hides_them() -> None:
    with pytest.raises(LocalProtocolError):
        ChapPolicy(INITIATOR, ChapCredentials("t", INITIATOR.secret))
    assert "initiator-secret" not in repr(ChapPolicy(INITIATOR, TARGET))
