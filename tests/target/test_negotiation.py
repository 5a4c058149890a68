"""Operational keys (RFC 7143 ch. 13): the target's answer to each offer, its own offers, result."""

from __future__ import annotations

import pytest

from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.negotiation import (
    NegotiationError,
    Negotiator,
    OperationalSettings,
    SessionParameters,
)

DEFAULTS = OperationalSettings()  # None/CRC32C, MRDSL 65536, MBL 256K, FBL 64K, R2T 1...

ANSWERS = [
    # 13.1 list: the first offered value the target accepts
    ("HeaderDigest", "CRC32C,None", "CRC32C"),
    ("HeaderDigest", "None,CRC32C", "None"),
    ("HeaderDigest", "MD5", "Reject"),
    ("DataDigest", "CRC32C", "CRC32C"),
    # 13.2 minimum, 1..65535
    ("MaxConnections", "4", "1"),
    ("MaxConnections", "0", "Reject"),
    ("MaxConnections", "65536", "Reject"),
    # 13.10 OR: the target prefers No here, so the initiator decides
    ("InitialR2T", "Yes", "Yes"),
    ("InitialR2T", "No", "No"),
    ("InitialR2T", "maybe", "Reject"),
    # 13.11 AND
    ("ImmediateData", "Yes", "Yes"),
    ("ImmediateData", "No", "No"),
    # 13.12 declarative: no answer
    ("MaxRecvDataSegmentLength", "262144", None),
    # 13.13 / 13.14 minimum, 512..2**24-1
    ("MaxBurstLength", "1048576", "262144"),
    ("MaxBurstLength", "4096", "4096"),
    ("MaxBurstLength", "0x1000", "4096"),
    ("MaxBurstLength", "511", "Reject"),
    ("FirstBurstLength", "16777215", "65536"),
    ("FirstBurstLength", "512", "512"),
    ("FirstBurstLength", "16777216", "Reject"),
    # 13.15 maximum / 13.16 minimum, 0..3600
    ("DefaultTime2Wait", "0", "2"),
    ("DefaultTime2Wait", "10", "10"),
    ("DefaultTime2Wait", "3601", "Reject"),
    ("DefaultTime2Retain", "0", "0"),
    ("DefaultTime2Retain", "60", "20"),
    # 13.17 minimum
    ("MaxOutstandingR2T", "16", "1"),
    # 13.18 / 13.19 OR: the target needs data in order
    ("DataPDUInOrder", "No", "Yes"),
    ("DataSequenceInOrder", "No", "Yes"),
    # 13.20 minimum: this target offers level 0
    ("ErrorRecoveryLevel", "2", "0"),
    ("ErrorRecoveryLevel", "3", "Reject"),
    # 13.23 list
    ("TaskReporting", "ResponseFence,RFC3720", "RFC3720"),
    ("TaskReporting", "FastAbort", "Reject"),
    # RFC 7144 2.1
    ("iSCSIProtocolLevel", "2", "1"),
    # 13.25 obsolete keys: never NotUnderstood
    ("IFMarker", "Yes", "No"),
    ("OFMarker", "No", "No"),
    ("IFMarkInt", "1~65535", "Reject"),
    ("OFMarkInt", "2048", "Reject"),
    # anything else
    ("X-com.example.tuning", "1", "NotUnderstood"),
    ("Frobnicate", "1", "NotUnderstood"),
]


@pytest.mark.parametrize(("key", "offer", "answer"), ANSWERS)
def test_answer(key: str, offer: str, answer: str | None) -> None:
    assert Negotiator(DEFAULTS).respond(key, offer) == answer


@pytest.mark.parametrize(
    ("settings", "key", "offer", "answer"),
    [
        (OperationalSettings(initial_r2t=True), "InitialR2T", "No", "Yes"),
        (OperationalSettings(immediate_data=False), "ImmediateData", "Yes", "No"),
        (OperationalSettings(header_digest=("None",)), "HeaderDigest", "CRC32C,None", "None"),
        (OperationalSettings(max_outstanding_r2t=8), "MaxOutstandingR2T", "4", "4"),
        (OperationalSettings(default_time2wait=5), "DefaultTime2Wait", "1", "5"),
    ],
)
def test_answer_follows_the_settings(
    settings: OperationalSettings, key: str, offer: str, answer: str
) -> None:
    assert Negotiator(settings).respond(key, offer) == answer


@pytest.mark.parametrize(
    "key",
    ["MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength",
     "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder"],
)  # fmt: skip
def test_session_keys_are_irrelevant_in_discovery(key: str) -> None:
    assert Negotiator(DEFAULTS, discovery=True).respond(key, "1") == "Irrelevant"


def test_connection_keys_still_count_in_discovery() -> None:
    negotiator = Negotiator(DEFAULTS, discovery=True)
    assert negotiator.respond("HeaderDigest", "CRC32C") == "CRC32C"
    assert negotiator.offers() == [("MaxRecvDataSegmentLength", "65536")]


def test_a_key_twice_is_an_error() -> None:
    negotiator = Negotiator(DEFAULTS)
    negotiator.respond("MaxBurstLength", "4096")
    with pytest.raises(NegotiationError):
        negotiator.respond("MaxBurstLength", "8192")


def test_bad_declaration_is_an_error() -> None:
    with pytest.raises(NegotiationError):
        Negotiator(DEFAULTS).respond("MaxRecvDataSegmentLength", "100")


def test_declaration_is_offered_once() -> None:
    negotiator = Negotiator(DEFAULTS)
    assert negotiator.offers() == [("MaxRecvDataSegmentLength", "65536")]
    assert negotiator.offers() == []
    assert not negotiator.awaiting_answers


def test_target_offers_what_its_defaults_would_not_allow() -> None:
    settings = OperationalSettings(immediate_data=False, max_burst_length=4096,
                                   first_burst_length=2048)  # fmt: skip
    negotiator = Negotiator(settings)
    negotiator.respond("FirstBurstLength", "1024")  # offered by the initiator: no own offer
    assert negotiator.needs_offers()
    assert negotiator.offers() == [
        ("MaxRecvDataSegmentLength", "65536"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", "4096"),
    ]
    assert negotiator.awaiting_answers and not negotiator.needs_offers()
    assert negotiator.respond("ImmediateData", "No") is None  # answers need no answer
    assert negotiator.respond("MaxBurstLength", "2048") is None
    assert not negotiator.awaiting_answers
    params = negotiator.parameters(initiator_name="iqn.i", isid=1)
    assert (params.immediate_data, params.max_burst_length, params.first_burst_length) == (
        False,
        2048,
        1024,
    )


@pytest.mark.parametrize(
    ("key", "answer"),
    [("ImmediateData", "Yes"), ("MaxBurstLength", "8192"), ("MaxBurstLength", "x")],
)
def test_answers_to_target_offers_must_fit_the_offer(key: str, answer: str) -> None:
    negotiator = Negotiator(OperationalSettings(immediate_data=False, max_burst_length=4096,
                                                first_burst_length=4096))  # fmt: skip
    negotiator.offers()
    with pytest.raises(NegotiationError):
        negotiator.respond(key, answer)


def test_parameters_with_nothing_negotiated_are_the_rfc_defaults() -> None:
    params = Negotiator(DEFAULTS).parameters(initiator_name="iqn.i", isid=0x23D000000001)
    assert params == SessionParameters(initiator_name="iqn.i", isid=0x23D000000001)
    assert params.target_max_recv_data_segment_length == 8192  # never declared: the default
    assert (params.header_digest, params.initial_r2t, params.max_burst_length) == (
        False,
        True,
        262144,
    )


def test_parameters_after_negotiation() -> None:
    negotiator = Negotiator(DEFAULTS)
    for key, value in [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C,None"),
                       ("MaxRecvDataSegmentLength", "262144"), ("InitialR2T", "No"),
                       ("FirstBurstLength", "1024")]:  # fmt: skip
        negotiator.respond(key, value)
    negotiator.offers()
    params = negotiator.parameters(initiator_name="iqn.i", isid=1, tsih=3)
    assert (params.header_digest, params.data_digest) == (True, True)
    assert params.max_recv_data_segment_length == 262144
    assert params.target_max_recv_data_segment_length == 65536
    assert (params.initial_r2t, params.first_burst_length, params.tsih) == (False, 1024, 3)


def test_first_burst_answer_fits_the_max_burst_settled_before() -> None:
    negotiator = Negotiator(DEFAULTS)
    negotiator.respond("MaxBurstLength", "1024")
    assert negotiator.respond("FirstBurstLength", "4096") == "1024"  # 13.14: not above MBL
    assert negotiator.parameters(initiator_name="iqn.i", isid=1).first_burst_length == 1024


def test_first_burst_over_a_later_max_burst_fails_at_the_end() -> None:
    negotiator = Negotiator(DEFAULTS)
    negotiator.respond("FirstBurstLength", "4096")
    negotiator.respond("MaxBurstLength", "1024")
    with pytest.raises(NegotiationError, match=r"^FirstBurstLength exceeds MaxBurstLength"):
        negotiator.parameters(initiator_name="iqn.i", isid=1)


def test_small_max_burst_without_first_burst_gets_a_first_burst_offer() -> None:
    """open-iscsi (InitialR2T=Yes, ImmediateData=No) offers no FirstBurstLength; its default
    65536 would exceed a smaller MaxBurstLength, so the target offers one that fits (13.14)."""
    negotiators = [Negotiator(DEFAULTS), Negotiator(DEFAULTS)]
    for negotiator in negotiators:
        for key, value in [("InitialR2T", "Yes"), ("ImmediateData", "No"),
                           ("MaxBurstLength", "16384")]:  # fmt: skip
            negotiator.respond(key, value)
        assert negotiator.needs_offers()
        assert ("FirstBurstLength", "16384") in negotiator.offers()
    with pytest.raises(NegotiationError):
        negotiators[1].respond("FirstBurstLength", "32768")  # more than offered
    negotiator = negotiators[0]
    negotiator.respond("FirstBurstLength", "8192")
    params = negotiator.parameters(initiator_name="iqn.i", isid=1)
    assert (params.max_burst_length, params.first_burst_length) == (16384, 8192)


def test_a_required_digest_refused_by_the_initiator_fails() -> None:
    negotiator = Negotiator(OperationalSettings(header_digest=("CRC32C",)))
    assert negotiator.respond("HeaderDigest", "None") == "Reject"
    with pytest.raises(NegotiationError):
        negotiator.parameters(initiator_name="iqn.i", isid=1)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"first_burst_length": 1 << 20, "max_burst_length": 1 << 19},
         r"^FirstBurstLength must not exceed MaxBurstLength \(13\.14\)$"),
        ({"error_recovery_level": 1}, "^this target implements ErrorRecoveryLevel 0, data in"),
        ({"max_recv_data_segment_length": 100}, "^MaxRecvDataSegmentLength=100 is outside its"),
        ({"data_pdu_in_order": False}, "^this target implements ErrorRecoveryLevel 0"),
    ],
)  # fmt: skip
def test_impossible_settings(kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(LocalProtocolError, match=why):
        OperationalSettings(**kwargs)  # type: ignore[arg-type]


def test_impossible_session_parameters() -> None:
    with pytest.raises(LocalProtocolError, match=r"^FirstBurstLength exceeds MaxBurstLength"):
        SessionParameters(initiator_name="i", isid=1, first_burst_length=8192,
                          max_burst_length=4096)  # fmt: skip
    why = r"^max_recv_data_segment_length is outside 512\.\.2\*\*24-1$"
    with pytest.raises(LocalProtocolError, match=why):
        SessionParameters(initiator_name="i", isid=1, max_recv_data_segment_length=1 << 24)


def test_a_key_twice_says_so() -> None:
    negotiator = Negotiator(DEFAULTS)
    negotiator.respond("MaxBurstLength", "4096")
    with pytest.raises(NegotiationError, match=r"^MaxBurstLength negotiated twice in one login"):
        negotiator.respond("MaxBurstLength", "4096")


def test_a_required_digest_is_offered_and_its_answer_checked() -> None:
    """The initiator never named HeaderDigest: the target offers the one it takes, and the
    answer must be in that offer."""
    for answer, ok in (("CRC32C", True), ("None", False)):
        negotiator = Negotiator(OperationalSettings(header_digest=("CRC32C",)))
        assert ("HeaderDigest", "CRC32C") in negotiator.offers()
        assert negotiator.offers() == []  # offered once: not again while it waits
        if ok:
            negotiator.respond("HeaderDigest", answer)
            assert negotiator.parameters(initiator_name="iqn.i", isid=1).header_digest
            continue
        with pytest.raises(NegotiationError, match=r"^HeaderDigest=None does not answer our"):
            negotiator.respond("HeaderDigest", answer)


def test_an_answer_out_of_the_keys_range_is_a_bad_answer() -> None:
    negotiator = Negotiator(OperationalSettings(max_burst_length=4096, first_burst_length=4096))
    negotiator.offers()
    with pytest.raises(NegotiationError, match=r"^bad answer MaxBurstLength='16777216'$"):
        negotiator.respond("MaxBurstLength", "16777216")


def test_discovery_offers_what_it_still_needs_after_the_irrelevant_keys() -> None:
    """Session keys are skipped in discovery (MaxConnections comes early in the table), the
    connection keys after them are still offered."""
    settings = OperationalSettings(max_connections=1, default_time2retain=0)
    offers = dict(Negotiator(settings, discovery=True).offers())
    assert offers.get("DefaultTime2Retain") == "0" and "MaxConnections" not in offers


def test_limits_of_the_settings_are_inclusive() -> None:
    OperationalSettings(max_burst_length=(1 << 24) - 1, first_burst_length=(1 << 24) - 1)
    SessionParameters(
        initiator_name="iqn.i", isid=1, target_max_recv_data_segment_length=(1 << 24) - 1
    )
    with pytest.raises(LocalProtocolError):
        OperationalSettings(max_burst_length=1 << 24)


def test_a_long_bad_declaration_is_quoted_up_to_40_characters() -> None:
    """A bad negotiated value is answered Reject; a bad declaration fails the login."""
    negotiator = Negotiator(DEFAULTS)
    assert negotiator.respond("MaxBurstLength", "x" * 50) == "Reject"
    with pytest.raises(NegotiationError) as caught:
        negotiator.respond("MaxRecvDataSegmentLength", "x" * 50)
    assert str(caught.value).startswith("MaxRecvDataSegmentLength='" + "x" * 40 + "': ")


def test_a_long_bad_answer_is_quoted_shortened() -> None:
    negotiator = Negotiator(OperationalSettings(max_burst_length=4096, first_burst_length=4096))
    negotiator.offers()
    with pytest.raises(NegotiationError) as caught:
        negotiator.respond("MaxBurstLength", "x" * 50)
    assert str(caught.value) == "bad answer MaxBurstLength=" + repr("x" * 40)
