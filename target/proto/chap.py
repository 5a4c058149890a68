"""CHAP with MD5 (RFC 1994 as RFC 7143 12.1.3 uses it), the target's side.

The exchange, after ``AuthMethod=CHAP`` was agreed::

    I->T  CHAP_A=<A1,A2...>
    T->I  CHAP_A=5 CHAP_I=<identifier> CHAP_C=<challenge>
    I->T  CHAP_N=<name> CHAP_R=<response> [CHAP_I=<id> CHAP_C=<challenge>]   (mutual)
    T->I  [CHAP_N=<name> CHAP_R=<response>]                                  (mutual)

A response is MD5(identifier byte + secret + challenge). The challenge and identifier come from
a caller-supplied ``random_bytes`` source (``secrets.token_bytes`` at the edge, a fixed source
in tests). An initiator that reflects the target's own challenge back for mutual
authentication is refused (12.1.3). Every failure is ``AuthenticationFailed``: the login fails
with status 0201 (11.13.5).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from scsi_pr.target.proto.constants import LoginStatus
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError
from scsi_pr.target.proto.text import (
    MAX_BINARY_LENGTH,
    ValueFormatError,
    encode_binary,
    parse_binary,
    parse_list,
    parse_number,
)

CHAP_MD5 = 5  # RFC 1994 / IANA PPP authentication algorithm 5
CHALLENGE_LENGTH = 16
CHAP_KEYS = frozenset({"CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"})


class AuthenticationFailed(RemoteProtocolError):
    """The initiator failed CHAP (or broke its exchange): login status 0201, then close."""

    reject_reason = None
    close_connection = True
    status = LoginStatus.AUTHENTICATION_FAILURE


@dataclass(frozen=True)
class ChapCredentials:
    """A CHAP name and secret (the secret as bytes; RFC 7143 9.2.1 wants 12 bytes or more)."""

    name: str
    secret: bytes

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.secret, bytes) or not self.secret:
            raise LocalProtocolError("CHAP credentials need a name and a non-empty secret")

    def __repr__(self) -> str:  # never print the secret
        return f"ChapCredentials(name={self.name!r}, secret=<{len(self.secret)} bytes>)"


@dataclass(frozen=True)
class ChapPolicy:
    """Who must authenticate: the initiator always; the target too when the initiator asks.

    ``target`` holds the target's own credentials for mutual CHAP (None: mutual refused).
    """

    initiator: ChapCredentials
    target: ChapCredentials | None = None

    def __post_init__(self) -> None:
        if self.target is not None and self.target.secret == self.initiator.secret:
            raise LocalProtocolError("mutual CHAP needs distinct secrets each way (9.2.1)")


def chap_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 4.1: MD5 over the identifier byte, the secret and the challenge."""
    return hashlib.md5(bytes([identifier]) + secret + challenge).digest()


class _Step(Enum):
    AWAIT_ALGORITHMS = "CHAP_A"
    AWAIT_RESPONSE = "CHAP_N/CHAP_R"
    DONE = "done"


class ChapAuthenticator:
    """One CHAP exchange; ``step`` consumes the initiator's CHAP keys, returns the reply keys."""

    def __init__(
        self,
        policy: ChapPolicy,
        random_bytes: Callable[[int], bytes],
        challenge_length: int = CHALLENGE_LENGTH,
    ) -> None:
        if not 1 <= challenge_length <= MAX_BINARY_LENGTH:
            raise LocalProtocolError("challenge length outside 1..1024")
        self.policy = policy
        self._random = random_bytes
        self._challenge_length = challenge_length
        self._step = _Step.AWAIT_ALGORITHMS
        self._identifier = 0
        self._challenge = b""
        #: whether the target proved itself to the initiator too
        self.mutual = False

    @property
    def done(self) -> bool:
        return self._step is _Step.DONE

    def step(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        """Consume this request's CHAP_* keys; return the CHAP_* keys to answer with.

        A request without CHAP keys (e.g. the one that agreed on AuthMethod) changes nothing.
        """
        if not keys:
            return []
        if self._step is _Step.DONE:
            raise AuthenticationFailed("CHAP keys after the exchange ended")
        if self._step is _Step.AWAIT_ALGORITHMS:
            return self._algorithms(keys)
        return self._response(keys)

    def _algorithms(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        if set(keys) != {"CHAP_A"}:
            raise AuthenticationFailed(f"expected CHAP_A alone, got {sorted(keys)}")
        try:
            offered = [parse_number(a, 0, 255) for a in parse_list(keys["CHAP_A"])]
        except ValueFormatError as e:
            raise AuthenticationFailed(f"bad CHAP_A: {e}") from e
        if CHAP_MD5 not in offered:
            raise AuthenticationFailed(f"CHAP_A offers no MD5 (5): {offered}")
        self._identifier = self._random(1)[0]
        self._challenge = self._random(self._challenge_length)
        self._step = _Step.AWAIT_RESPONSE
        return [
            ("CHAP_A", str(CHAP_MD5)),
            ("CHAP_I", str(self._identifier)),
            ("CHAP_C", encode_binary(self._challenge)),
        ]

    def _response(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        mutual = {"CHAP_I", "CHAP_C"} & set(keys)
        if not {"CHAP_N", "CHAP_R"} <= set(keys) or set(keys) - CHAP_KEYS:
            raise AuthenticationFailed(f"expected CHAP_N and CHAP_R, got {sorted(keys)}")
        if "CHAP_A" in keys or mutual not in (set(), {"CHAP_I", "CHAP_C"}):
            raise AuthenticationFailed("CHAP_I and CHAP_C come together, CHAP_A only once")
        try:
            response = parse_binary(keys["CHAP_R"])
        except ValueFormatError as e:
            raise AuthenticationFailed(f"bad CHAP_R: {e}") from e
        expected = chap_response(self._identifier, self.policy.initiator.secret, self._challenge)
        name_ok = keys["CHAP_N"] == self.policy.initiator.name
        if not (hmac.compare_digest(response, expected) and name_ok):
            raise AuthenticationFailed(f"CHAP response of {keys['CHAP_N']!r} does not match")
        proof = self._prove_target(keys["CHAP_I"], keys["CHAP_C"]) if mutual else []
        self._step = _Step.DONE  # only once both directions succeeded
        return proof

    def _prove_target(self, identifier_text: str, challenge_text: str) -> list[tuple[str, str]]:
        if self.policy.target is None:
            raise AuthenticationFailed("the initiator asks for mutual CHAP; none is configured")
        try:
            identifier = parse_number(identifier_text, 0, 255)
            challenge = parse_binary(challenge_text)
        except ValueFormatError as e:
            raise AuthenticationFailed(f"bad mutual CHAP challenge: {e}") from e
        if challenge == self._challenge:
            raise AuthenticationFailed("the initiator reflected the target's challenge (12.1.3)")
        self.mutual = True
        target = self.policy.target
        return [
            ("CHAP_N", target.name),
            ("CHAP_R", encode_binary(chap_response(identifier, target.secret, challenge))),
        ]
