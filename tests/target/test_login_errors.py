"""The login's failures: the status each answers with, and what each says."""

from __future__ import annotations

from typing import Any

import pytest
from login_driver import CHAP, FFP, INITIATOR, ISID, NAMES, OP, SEC, TARGET, Driver, settings

from scsi_pr.target.proto import LoginRequest, LoginStatus
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.login import Login, LoginFailed, LoginSettings, LoginState, TargetNode
from scsi_pr.target.proto.negotiation import OperationalSettings
from scsi_pr.target.proto.text import build_text

FAILURES = [
    # (settings, first request csg/nsg/transit, keys, extra fields, status)
    ({}, (SEC, OP, True), {"TargetName": TARGET}, {}, LoginStatus.MISSING_PARAMETER),
    ({}, (SEC, OP, True), {"InitiatorName": INITIATOR}, {}, LoginStatus.MISSING_PARAMETER),
    ({}, (SEC, OP, True), {**NAMES, "TargetName": "iqn.x:nope"}, {}, LoginStatus.NOT_FOUND),
    ({"allow_discovery": False}, (SEC, OP, True),
     {"InitiatorName": INITIATOR, "SessionType": "Discovery"}, {},
     LoginStatus.SESSION_TYPE_NOT_SUPPORTED),
    ({}, (SEC, OP, True), {**NAMES, "SessionType": "Bogus"}, {},
     LoginStatus.SESSION_TYPE_NOT_SUPPORTED),
    ({}, (SEC, OP, True), NAMES, {"version_min": 1}, LoginStatus.UNSUPPORTED_VERSION),
    ({}, (SEC, OP, True), NAMES, {"tsih": 9}, LoginStatus.SESSION_DOES_NOT_EXIST),
    ({}, (SEC, OP, True), NAMES, {"tsih": 3}, LoginStatus.TOO_MANY_CONNECTIONS),
    ({}, (SEC, OP, True), NAMES, {"continues": True}, LoginStatus.INITIATOR_ERROR),
    ({}, (FFP, FFP, False), NAMES, {}, LoginStatus.INITIATOR_ERROR),
    ({}, (SEC, 2, True), NAMES, {}, LoginStatus.INITIATOR_ERROR),
    ({}, (OP, SEC, True), NAMES, {}, LoginStatus.INITIATOR_ERROR),
    ({"allowed_initiators": frozenset({"iqn.other"})}, (SEC, OP, True), NAMES, {},
     LoginStatus.AUTHORIZATION_FAILURE),
    ({"chap": CHAP}, (SEC, OP, True), {**NAMES, "AuthMethod": "None"}, {},
     LoginStatus.AUTHENTICATION_FAILURE),
    ({"chap": CHAP}, (SEC, OP, True), NAMES, {}, LoginStatus.AUTHENTICATION_FAILURE),
    ({"chap": CHAP}, (OP, FFP, True), NAMES, {}, LoginStatus.AUTHENTICATION_FAILURE),
    ({}, (SEC, OP, False), {**NAMES, "CHAP_A": "5"}, {}, LoginStatus.AUTHENTICATION_FAILURE),
    ({}, (SEC, OP, True), {**NAMES, "MaxBurstLength": "512"}, {}, LoginStatus.INITIATOR_ERROR),
    ({}, (SEC, OP, True), {**NAMES, "InitiatorName": "iqn." + "x" * 220}, {},
     LoginStatus.INITIATOR_ERROR),
    # names a TransportID cannot carry (a normal session's nexus is one)
    ({}, (SEC, OP, True), {**NAMES, "InitiatorName": "iqn.2024-01.org.example:a,b"}, {},
     LoginStatus.INITIATOR_ERROR),
    ({}, (SEC, OP, True), {**NAMES, "InitiatorName": "iqn.2024-01.\u00fcber:x"}, {},
     LoginStatus.INITIATOR_ERROR),
    ({}, (OP, FFP, True), {**NAMES, "MaxRecvDataSegmentLength": "1"}, {},
     LoginStatus.INITIATOR_ERROR),
]  # fmt: skip


@pytest.mark.parametrize(("config", "stages", "keys", "fields", "status"), FAILURES)
def test_first_request_failures(
    config: dict[str, Any],
    stages: tuple[int, int, bool],
    keys: dict[str, str],
    fields: dict[str, Any],
    status: LoginStatus,
) -> None:
    d = Driver(settings(**config), existing_sessions={3})
    assert d.send(*stages, keys, **fields) == {}
    assert d.status == status
    assert d.response is not None and not d.response.transit
    assert d.login.state is LoginState.FAILED and d.login.error is not None
    assert d.login.error.status == status and d.login.error.close_connection


def test_malformed_text_is_an_initiator_error() -> None:
    d = Driver()
    d.login.receive(LoginRequest(csg=SEC, isid=ISID, data=b"InitiatorName"))
    assert d.login.error is not None and d.login.error.status == LoginStatus.INITIATOR_ERROR


@pytest.mark.parametrize(
    ("second", "fields"),
    [
        ((SEC, OP, True, {"InitiatorName": "iqn.again"}), {}),  # redeclared (13.5)
        ((SEC, OP, True, {}), {"isid": ISID + 1}),  # ISID changed
        ((SEC, OP, True, {"AuthMethod": "None"}), {}),  # AuthMethod twice
        ((OP, FFP, True, {}), {}),  # CSG skips ahead of the target
    ],
)
def test_later_request_failures(second: tuple[Any, ...], fields: dict[str, Any]) -> None:
    d = Driver()
    d.send(SEC, OP, False, {**NAMES, "AuthMethod": "None"})
    csg, nsg, transit, keys = second
    request = LoginRequest(transit=transit, csg=csg, nsg=nsg, isid=fields.get("isid", ISID),
                           data=build_text(keys.items()))  # fmt: skip
    assert d.login.receive(request).status == LoginStatus.INITIATOR_ERROR


def test_security_keys_after_the_security_stage_fail() -> None:
    d = Driver()
    d.send(SEC, OP, True, NAMES)
    d.send(OP, FFP, False, {"AuthMethod": "None"})
    assert d.status == LoginStatus.INITIATOR_ERROR


def test_operational_key_twice_in_one_login_fails() -> None:
    d = Driver()
    d.send(OP, FFP, False, {**NAMES, "MaxBurstLength": "4096"})
    d.send(OP, FFP, True, {"MaxBurstLength": "4096"})
    assert d.status == LoginStatus.INITIATOR_ERROR


def test_wrong_chap_response_fails() -> None:
    d = Driver(settings(chap=CHAP))
    d.send(SEC, OP, True, {**NAMES, "AuthMethod": "CHAP"})
    d.send(SEC, OP, True, {"CHAP_A": "5"})
    d.send(SEC, OP, True, {"CHAP_N": "host1", "CHAP_R": "0x" + bytes(16).hex()})
    assert d.status == LoginStatus.AUTHENTICATION_FAILURE


def test_non_login_pdu_during_login() -> None:
    d = Driver()
    d.send(SEC, OP, False, NAMES)
    response = d.login.fail(LoginFailed(LoginStatus.INVALID_DURING_LOGIN, "a SCSI Command"))
    assert response.status == LoginStatus.INVALID_DURING_LOGIN
    assert d.login.state is LoginState.FAILED


def test_endless_login_is_cut_off() -> None:
    d = Driver()
    d.send(SEC, OP, False, NAMES)
    for _ in range(70):
        if d.login.state is not LoginState.IN_PROGRESS:
            break
        d.send(SEC, OP, False)
    assert d.status == LoginStatus.INITIATOR_ERROR


def test_nothing_after_the_end() -> None:
    d = Driver()
    d.send(OP, FFP, True, NAMES)
    with pytest.raises(LocalProtocolError):
        d.send(OP, FFP, True)
    with pytest.raises(LocalProtocolError):
        Login(settings(), tsih=0, random_bytes=bytes)


def test_a_failure_response_answers_the_request_it_failed() -> None:
    d = Driver()
    d.send(SEC, OP, True, {**NAMES, "SessionType": "Bogus"}, initiator_task_tag=33)
    response = d.response
    assert response is not None and response.status == LoginStatus.SESSION_TYPE_NOT_SUPPORTED
    assert (response.initiator_task_tag, response.isid) == (33, ISID)
    assert str(d.login.error) == "SESSION_TYPE_NOT_SUPPORTED: Bogus"


#: what each of FAILURES says, in the same order
FAILURE_MESSAGES = [
    "MISSING_PARAMETER: no InitiatorName (13.5)",
    "MISSING_PARAMETER: no TargetName (13.4)",
    "NOT_FOUND: no target 'iqn.x:nope'",
    "SESSION_TYPE_NOT_SUPPORTED: Discovery",
    "SESSION_TYPE_NOT_SUPPORTED: Bogus",
    "UNSUPPORTED_VERSION: version_min above 0x00",
    "SESSION_DOES_NOT_EXIST: TSIH 9: MaxConnections is 1",
    "TOO_MANY_CONNECTIONS: TSIH 3: MaxConnections is 1",
    "INITIATOR_ERROR: T and C both set (11.12.2)",
    "INITIATOR_ERROR: CSG 3 in Stage.SECURITY_NEGOTIATION",
    "INITIATOR_ERROR: NSG 2 after 0",
    "INITIATOR_ERROR: NSG 0 after 1",
    "AUTHORIZATION_FAILURE: not in the target's ACL",
    "AUTHENTICATION_FAILURE: AuthMethod=None: this target needs CHAP",
    "AUTHENTICATION_FAILURE: AuthMethod=None: this target needs CHAP",
    "AUTHENTICATION_FAILURE: AuthMethod=None: this target needs CHAP",
    "AUTHENTICATION_FAILURE: CHAP keys without AuthMethod=CHAP",
    "INITIATOR_ERROR: MaxBurstLength in the security stage",
    "INITIATOR_ERROR: InitiatorName over 223 bytes",
    "INITIATOR_ERROR: bad iSCSI name: 'iqn.2024-01.org.example:a,b'",
    "INITIATOR_ERROR: bad iSCSI name: 'iqn.2024-01.\u00fcber:x'",
    "INITIATOR_ERROR: MaxRecvDataSegmentLength='1': 1 is outside 512..16777215",
]


@pytest.mark.parametrize(("failure", "message"), list(zip(FAILURES, FAILURE_MESSAGES, strict=True)))
def test_first_request_failures_say_why(failure: tuple[Any, ...], message: str) -> None:
    config, stages, keys, fields, _ = failure
    d = Driver(settings(**config), existing_sessions={3})
    d.send(*stages, keys, **fields)
    assert str(d.login.error) == message


@pytest.mark.parametrize(
    ("second", "fields", "message"),
    [
        ((SEC, OP, True, {"InitiatorName": "iqn.again"}), {}, "identity keys redeclared (13.4)"),
        ((SEC, OP, True, {}), {"isid": ISID + 1}, "ISID, TSIH or CID changed in login"),
        ((SEC, OP, True, {"AuthMethod": "None"}), {}, "AuthMethod negotiated twice"),
        ((OP, FFP, True, {}), {}, "CSG 1 in Stage.SECURITY_NEGOTIATION"),
    ],
)
def test_later_request_failures_say_why(
    second: tuple[Any, ...], fields: dict[str, Any], message: str
) -> None:
    d = Driver()
    d.send(SEC, OP, False, {**NAMES, "AuthMethod": "None"})
    csg, nsg, transit, keys = second
    d.login.receive(LoginRequest(transit=transit, csg=csg, nsg=nsg, isid=fields.get("isid", ISID),
                                 data=build_text(keys.items())))  # fmt: skip
    assert str(d.login.error) == f"INITIATOR_ERROR: {message}"


def test_other_login_errors_say_why() -> None:
    d = Driver()
    d.send(SEC, OP, True, NAMES)
    d.send(OP, FFP, False, {"AuthMethod": "None"})
    assert str(d.login.error) == "INITIATOR_ERROR: AuthMethod after the security stage"
    d = Driver()
    d.send(SEC, OP, False, NAMES)
    for _ in range(64):
        d.send(SEC, OP, False)
    assert str(d.login.error) == "INITIATOR_ERROR: too many login requests"
    d = Driver()
    d.send(OP, FFP, True, NAMES)
    with pytest.raises(LocalProtocolError, match=r"^login is complete$"):
        d.send(OP, FFP, True)


def test_a_fresh_login_has_no_parameters_and_no_error() -> None:
    login = Login(settings(), tsih=1, random_bytes=bytes)
    assert login.parameters is None and login.error is None


def test_a_later_request_is_answered_as_itself() -> None:
    """An acknowledgement of C=1 text and a failure answer the request they follow, not the
    first one of the login."""
    d = Driver()
    d.send(SEC, OP, False, NAMES, initiator_task_tag=1)
    d.send(SEC, OP, False, {"X": "1"}, initiator_task_tag=2, continues=True)
    assert d.response is not None and d.response.initiator_task_tag == 2
    d.send(OP, FFP, True, {"AuthMethod": "None"}, initiator_task_tag=3)  # after security: fails
    assert d.response.initiator_task_tag == 3 and d.response.csg == OP


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({**NAMES, "TargetName": "iqn.2024-01.test:" + "t" * 90},
         "NOT_FOUND: no target " + repr(("iqn.2024-01.test:" + "t" * 90)[:80])),
        ({**NAMES, "SessionType": "S" * 50}, "SESSION_TYPE_NOT_SUPPORTED: " + "S" * 40),
        ({**NAMES, "InitiatorName": "iqn.2024-01.test:" + "," * 90},
         "INITIATOR_ERROR: " + ("bad iSCSI name: " + repr("iqn.2024-01.test:" + "," * 90))[:80]),
    ],
)  # fmt: skip
def test_long_names_are_quoted_shortened(keys: dict[str, str], message: str) -> None:
    d = Driver()
    d.send(SEC, OP, True, keys)
    assert str(d.login.error) == message


def test_a_long_auth_method_offer_is_quoted_shortened() -> None:
    d = Driver(settings(chap=CHAP))
    offer = ",".join(["None"] * 20)  # 99 characters
    d.send(SEC, OP, True, {**NAMES, "AuthMethod": offer})
    assert (
        str(d.login.error)
        == f"AUTHENTICATION_FAILURE: AuthMethod={offer[:60]}: this target needs CHAP"
    )


def test_a_refused_required_digest_fails_the_login_as_an_initiator_error() -> None:
    required = OperationalSettings(header_digest=("CRC32C",))
    d = Driver(LoginSettings(targets=(TargetNode(TARGET),), operational=required))
    d.send(OP, FFP, True, {**NAMES, "HeaderDigest": "None"})
    assert d.status == LoginStatus.INITIATOR_ERROR
    assert str(d.login.error) == "INITIATOR_ERROR: HeaderDigest=None is not acceptable here"


def test_later_authentication_and_text_failures_answer_their_own_request() -> None:
    d = Driver(settings(chap=CHAP))
    d.send(SEC, OP, True, {**NAMES, "AuthMethod": "CHAP"}, initiator_task_tag=1)
    d.send(SEC, OP, True, {"CHAP_A": "5"}, initiator_task_tag=2)
    d.send(SEC, OP, True, {"CHAP_N": "host1", "CHAP_R": "0x" + bytes(16).hex()},
           initiator_task_tag=3)  # fmt: skip
    assert d.response is not None and d.response.initiator_task_tag == 3
    assert str(d.login.error) == "AUTHENTICATION_FAILURE: CHAP response of 'host1' does not match"
    d = Driver()
    d.send(SEC, OP, False, NAMES, initiator_task_tag=1)
    bad = LoginRequest(csg=SEC, isid=ISID, initiator_task_tag=2, data=b"NoEquals\0")
    assert d.login.receive(bad).initiator_task_tag == 2
    assert str(d.login.error) == "INITIATOR_ERROR: 'NoEquals' has no '='"
