"""The login state machine: stages, T/C bits, names, CHAP. The status of every failure, and
what each says, are in test_login_errors.py."""

from __future__ import annotations

import hashlib

import pytest
from login_driver import CHAP, FFP, INITIATOR, ISID, NAMES, OP, SEC, TARGET, Driver, settings

from scsi_pr.target.proto import LoginRequest, LoginStatus
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.login import Login, LoginState
from scsi_pr.target.proto.negotiation import OperationalSettings
from scsi_pr.target.proto.text import build_text, parse_text


def test_login_without_authentication() -> None:
    d = Driver()
    answers = d.send(SEC, OP, True, {**NAMES, "SessionType": "Normal", "AuthMethod": "None"})
    assert answers == {"AuthMethod": "None", "TargetPortalGroupTag": "1"}
    assert d.response is not None and (d.response.transit, d.response.nsg) == (True, OP)
    assert d.login.state is LoginState.IN_PROGRESS and d.response.tsih == 0
    answers = d.send(OP, FFP, True, {"HeaderDigest": "CRC32C,None", "InitialR2T": "No",
                                     "MaxRecvDataSegmentLength": "262144"})  # fmt: skip
    assert answers == {"HeaderDigest": "CRC32C", "InitialR2T": "No",
                       "MaxRecvDataSegmentLength": "65536"}  # fmt: skip
    assert (d.response.transit, d.response.csg, d.response.nsg) == (True, OP, FFP)
    assert d.response.tsih == 7 and d.status == LoginStatus.SUCCESS
    assert d.login.state is LoginState.COMPLETE
    params = d.login.parameters
    assert params is not None
    assert (params.initiator_name, params.target_name, params.isid, params.tsih) == (
        INITIATOR, TARGET, ISID, 7)  # fmt: skip
    assert params.header_digest and not params.initial_r2t
    assert params.max_recv_data_segment_length == 262144


def test_sequence_numbers_of_login_responses() -> None:
    d = Driver(settings(command_window=16))
    d.send(SEC, OP, True, NAMES)
    assert d.response is not None
    assert (d.response.stat_sn, d.response.exp_cmd_sn, d.response.max_cmd_sn) == (100, 10, 25)
    d.send(OP, FFP, True)
    assert d.response.stat_sn == 101 and d.login.stat_sn == 102  # next StatSN for the session
    assert d.response.initiator_task_tag == 0 and d.response.isid == ISID


def test_operational_stage_first_and_straight_to_full_feature() -> None:
    d = Driver(settings(alias="Disk One"))
    answers = d.send(OP, FFP, True, {**NAMES, "ImmediateData": "No"})
    assert answers == {"TargetPortalGroupTag": "1", "TargetAlias": "Disk One",
                       "ImmediateData": "No", "MaxRecvDataSegmentLength": "65536"}  # fmt: skip
    assert d.login.state is LoginState.COMPLETE


def test_security_straight_to_full_feature_without_declaration() -> None:
    d = Driver()
    d.send(SEC, FFP, True, NAMES)
    assert d.login.state is LoginState.COMPLETE and d.login.parameters is not None
    assert d.login.parameters.target_max_recv_data_segment_length == 8192


def test_discovery_session() -> None:
    d = Driver()
    answers = d.send(SEC, OP, True, {"InitiatorName": INITIATOR, "SessionType": "Discovery"})
    assert answers == {}  # no TargetName, so no TargetPortalGroupTag (13.9)
    answers = d.send(OP, FFP, True, {"MaxBurstLength": "4096", "HeaderDigest": "None"})
    assert answers["MaxBurstLength"] == "Irrelevant" and answers["HeaderDigest"] == "None"
    assert d.login.parameters is not None and d.login.parameters.discovery


def test_text_split_over_c_bit_requests() -> None:
    d = Driver()
    text = build_text(NAMES.items())
    request = LoginRequest(csg=SEC, nsg=OP, continues=True, isid=ISID, data=text[:10])
    first = d.login.receive(request)
    assert (first.data, first.transit, first.status) == (b"", False, 0)
    request = LoginRequest(csg=SEC, nsg=OP, transit=True, isid=ISID, data=text[10:])
    assert dict(parse_text(d.login.receive(request).data))["TargetPortalGroupTag"] == "1"


def chap_login(d: Driver, mutual: bool = False) -> dict[str, str]:
    answers = d.send(SEC, OP, True, {**NAMES, "AuthMethod": "CHAP,None"})
    assert answers["AuthMethod"] == "CHAP"
    assert d.response is not None and not d.response.transit  # not authenticated yet
    answers = d.send(SEC, OP, True, {"CHAP_A": "5"})
    identifier, challenge = int(answers["CHAP_I"]), bytes.fromhex(answers["CHAP_C"][2:])
    digest = hashlib.md5(bytes([identifier]) + b"host1-secret" + challenge).hexdigest()
    keys = {"CHAP_N": "host1", "CHAP_R": "0x" + digest}
    if mutual:
        keys |= {"CHAP_I": "9", "CHAP_C": "0x00112233"}
    return d.send(SEC, OP, True, keys)


def test_chap_login() -> None:
    d = Driver(settings(chap=CHAP))
    assert chap_login(d) == {}
    assert d.response is not None and (d.response.transit, d.response.nsg) == (True, OP)
    d.send(OP, FFP, True)
    assert d.login.state is LoginState.COMPLETE


def test_mutual_chap_login() -> None:
    d = Driver(settings(chap=CHAP))
    answers = chap_login(d, mutual=True)
    expected = hashlib.md5(b"\x09" + b"disk-secret!" + bytes.fromhex("00112233")).hexdigest()
    assert answers == {"CHAP_N": "disk", "CHAP_R": "0x" + expected}
    assert d.response is not None and d.response.transit


def test_target_offers_force_the_operational_stage() -> None:
    d = Driver(settings(operational=OperationalSettings(immediate_data=False)))
    d.send(SEC, FFP, True, NAMES)
    assert d.response is not None and (d.response.transit, d.response.nsg) == (True, OP)
    answers = d.send(OP, FFP, True, {"InitialR2T": "Yes"})
    assert answers["ImmediateData"] == "No" and not d.response.transit  # awaiting the answer
    d.send(OP, FFP, True, {"ImmediateData": "No"})
    assert d.response.transit and d.login.parameters is not None
    assert not d.login.parameters.immediate_data


def test_small_max_burst_without_first_burst_logs_in() -> None:
    """open-iscsi with InitialR2T=Yes, ImmediateData=No sends no FirstBurstLength: the target
    offers one not above MaxBurstLength (13.14) and holds the transit until it is answered."""
    d = Driver()
    d.send(SEC, OP, True, {**NAMES, "AuthMethod": "None"})
    answers = d.send(OP, FFP, True, {"InitialR2T": "Yes", "ImmediateData": "No",
                                     "MaxBurstLength": "16384"})  # fmt: skip
    assert answers["FirstBurstLength"] == "16384"
    assert d.response is not None and not d.response.transit
    assert d.send(OP, FFP, True, {"FirstBurstLength": "16384"}) == {}
    assert d.login.state is LoginState.COMPLETE and d.login.parameters is not None
    assert (d.login.parameters.max_burst_length, d.login.parameters.first_burst_length) == (
        16384,
        16384,
    )


def test_an_initiator_in_the_acl_logs_in() -> None:
    """The ACL is checked against the name the initiator gave (the refusing case is in
    FAILURES)."""
    d = Driver(settings(allowed_initiators=frozenset({INITIATOR})))
    d.send(OP, FFP, True, NAMES)
    assert d.status == LoginStatus.SUCCESS


def test_the_session_parameters_record_alias_portal_group_and_cid() -> None:
    d = Driver(settings(portal_group_tag=9))
    d.send(SEC, OP, True, {**NAMES, "InitiatorAlias": "node-a"}, cid=4)
    d.send(OP, FFP, True, cid=4)
    params = d.login.parameters
    assert params is not None
    assert (params.initiator_alias, params.target_portal_group_tag, params.cid) == ("node-a", 9, 4)


def test_the_alias_may_come_in_the_operational_stage() -> None:
    d = Driver()
    answers = d.send(OP, FFP, True, {**NAMES, "InitiatorAlias": "node-b"})
    assert "InitiatorAlias" not in answers  # declarative: no answer
    assert d.login.parameters is not None and d.login.parameters.initiator_alias == "node-b"


def test_unknown_security_keys_are_not_understood() -> None:
    d = Driver()
    answers = d.send(SEC, OP, False, {**NAMES, "X-vendor-key": "1", "InitiatorAlias": "a"})
    assert answers == {"X-vendor-key": "NotUnderstood", "TargetPortalGroupTag": "1"}


def test_a_response_that_does_not_transit_names_stage_zero_and_the_version() -> None:
    d = Driver()
    d.send(SEC, OP, False, NAMES)
    response = d.response
    assert response is not None and not response.transit and response.nsg == 0
    assert (response.version_max, response.version_active, response.isid) == (0, 0, ISID)


def test_transit_to_the_same_stage_fails() -> None:
    d = Driver()
    d.send(SEC, SEC, True, NAMES)
    assert d.status == LoginStatus.INITIATOR_ERROR


def test_name_length_limit_is_inclusive() -> None:
    name = "iqn.2024-01.test:" + "n" * (223 - len("iqn.2024-01.test:"))
    d = Driver()
    d.send(OP, FFP, True, {**NAMES, "InitiatorName": name})
    assert d.status == LoginStatus.SUCCESS


def test_the_request_limit_is_64() -> None:
    d = Driver()
    d.send(SEC, OP, False, NAMES)
    for _ in range(63):
        d.send(SEC, OP, False)
    assert d.login.state is LoginState.IN_PROGRESS  # 64 requests
    d.send(SEC, OP, False)
    assert d.status == LoginStatus.INITIATOR_ERROR


@pytest.mark.parametrize(("tsih", "ok"), [(0, False), (1, True), (0xFFFF, True), (0x10000, False)])
def test_tsih_bounds(tsih: int, ok: bool) -> None:
    if ok:
        assert Login(settings(), tsih=tsih, random_bytes=bytes).state is LoginState.IN_PROGRESS
        return
    with pytest.raises(LocalProtocolError, match=r"^a new session's TSIH must be 1\.\.65535$"):
        Login(settings(), tsih=tsih, random_bytes=bytes)
