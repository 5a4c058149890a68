"""Device profiles (``scsi_pr.sim.profiles``): the registry's shape, and each deviation's
decision point in the model, answered once as SPC-5 says (``spc5``) and once as LIO does
(``lio-6.1``; the cases themselves are in deviation_cases.py). The conformance suite asserts
the same answers on every backend; these run in the default host tier, where the model answers
as ``spc5`` unless told otherwise."""

from __future__ import annotations

import pytest
from deviation_cases import CASES, COVERED_TOGETHER, all_registrants, verify_and_mode_sense
from profile_lu import (
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    K3,
    A,
    Lu,
    answers,
    triple,
)

from scsi_pr.sim import cdb as C
from scsi_pr.sim import deviations
from scsi_pr.sim import deviations as D
from scsi_pr.sim import profiles as P
from scsi_pr.sim.constants import (
    PersistentReserveInAction as IN,
)
from scsi_pr.sim.constants import (
    PersistentReserveOutAction as SA,
)
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.state import StateFormatError
from scsi_pr.sim.transportid import TransportId


def test_registry_names_are_unique_and_every_entry_has_a_test() -> None:
    names = [d.name for d in D.REGISTRY]
    assert len(names) == len(set(names)) == len(D.DEVIATIONS)
    for d in D.REGISTRY:
        assert d.tests and all(t.startswith("tests/conformance/test_conf_") for t in d.tests)
        assert d.clause.startswith(("SPC-5 ", "SAM-5 ")), d.clause
    # the registry is built at import, before a mutant is switched on: call its helper here
    assert deviations._tests("test_conf_x.py::t") == ("tests/conformance/test_conf_x.py::t",)


def test_profiles() -> None:
    assert P.get("spc5") is P.SPC5 and not P.SPC5.deviations
    assert P.LIO_6_1.deviations == frozenset(D.REGISTRY)
    assert P.LIO_6_12.deviations == P.LIO_6_1.deviations - {D.READ_CAPACITY_10_CONFLICT}
    assert all(P.LIO_6_1.measured(d) for d in D.REGISTRY)
    assert all(P.LIO_6_12.measured(d) for d in P.LIO_6_12.deviations)
    assert not P.SPC5.measured(D.UA_CLEARS_ALL)
    # a kernel's profile has not measured what its kernel no longer does
    assert not P.LIO_6_12.measured(D.READ_CAPACITY_10_CONFLICT)
    assert P.get(P.LIO_6_1) is P.LIO_6_1
    with pytest.raises(P.UnknownProfile, match=r"known profiles: spc5, lio-6\.1, lio-6\.12"):
        P.get("lio-9")


@pytest.mark.parametrize(
    ("release", "name"),
    [("6.1.0-57-amd64", "lio-6.1"), ("6.12.9+bpo-amd64", "lio-6.12"), ("6.1", "lio-6.1"),
     ("6.10.2", None), ("5.10.0-30-amd64", None), ("6.1-rc3", "lio-6.1"),
     ("6.12+deb12", "lio-6.12")],
)  # fmt: skip
def test_lio_profile_for_kernel_release(release: str, name: str | None) -> None:
    found = P.lio_profile_for(release)
    assert (found.name if found else None) == name


def test_choose_names_the_deviation() -> None:
    assert P.SPC5.choose(D.UA_CLEARS_ALL, "standard", "lio") == "standard"
    assert P.LIO_6_1.choose(D.UA_CLEARS_ALL, "standard", "lio") == "lio"
    assert D.UA_CLEARS_ALL in P.LIO_6_1 and D.UA_CLEARS_ALL not in P.SPC5


# -- the model, one deviation at a time --------------------------------------------------------


def test_every_deviation_has_a_model_case() -> None:
    assert set(CASES) | COVERED_TOGETHER == set(D.REGISTRY)


@pytest.mark.parametrize("deviation", list(CASES), ids=lambda d: d.name)
@pytest.mark.parametrize("profile", ["spc5", "lio-6.1"])
def test_the_model_answers_as_the_profile_says(deviation: D.Deviation, profile: str) -> None:
    situation, standard, lio = CASES[deviation]
    assert situation(Lu(profile)) == (lio if profile == "lio-6.1" else standard)


def test_6_12_allows_read_capacity_10_and_still_refuses_read_capacity_16() -> None:
    """Measured on Debian's 6.12: READ CAPACITY(10) is answered as SPC-5 says, (16) is not."""
    assert verify_and_mode_sense(Lu("lio-6.12")) == answers("GG GG GG CG CG CG  GG CC GC CC CC CC")


def test_all_registrants_holder_is_filed_only_under_lio() -> None:
    for profile, holder in (("spc5", None), ("lio-6.1", 0)):
        u = Lu(profile)
        all_registrants(u)
        res = u.lu.pr.reservation
        assert res is not None
        assert res.holder == (None if holder is None else u.n[holder])
        assert u.lu.pr.holder_key() == 0, "READ RESERVATION reports key 0 for AR either way"


def test_report_capabilities_rlr_c_follows_the_profile() -> None:
    for profile, rlr_c in (("spc5", 0x80), ("lio-6.1", 0)):
        u = Lu(profile)
        r = u.lu.execute(u.n[0], C.persistent_reserve_in(IN.REPORT_CAPABILITIES))
        assert r.data[2] & 0x80 == rlr_c
    lu = LogicalUnit(profile="lio-6.1", replace_lost_reservation=True)
    assert lu.capabilities.rlr_c, "an explicit RLR_C wins over the profile's"


# -- snapshots carry the profile -------------------------------------------------------------
def test_snapshot_names_the_profile_and_restore_refuses_another() -> None:
    lu = LogicalUnit(profile="lio-6.1")
    snap = lu.snapshot()
    assert snap["profile"] == "lio-6.1"
    LogicalUnit.from_snapshot(snap, profile="lio-6.1")
    with pytest.raises(P.ProfileMismatch, match=r"'lio-6\.1'.*'spc5'") as e:
        LogicalUnit().restore(snap)
    assert (e.value.saved, e.value.running) == ("lio-6.1", "spc5")
    assert str(e.value).endswith("(every process sharing a state dir must use the same --profile)")


def test_snapshot_without_a_profile_is_an_spc5_lus() -> None:
    snap = LogicalUnit().snapshot()
    del snap["profile"]
    LogicalUnit().restore(snap)
    with pytest.raises(P.ProfileMismatch):
        LogicalUnit(profile="lio-6.1").restore(snap)


def test_snapshot_with_a_malformed_profile_is_a_format_error() -> None:
    snap = LogicalUnit().snapshot()
    snap["profile"] = ["spc5"]
    with pytest.raises((StateFormatError, P.ProfileMismatch)):
        LogicalUnit().restore(snap)


def test_a_short_allocation_length_is_pointed_at_where_field_pointers_are_kept() -> None:
    """LIO's profiles drop field pointers (``NO_FIELD_POINTER``), which would hide where the
    ALLOCATION LENGTH refusal points: a profile with that deviation alone shows it."""
    only = P.Profile("minimum-only", "one deviation", frozenset({D.ALLOCATION_LENGTH_MINIMUM}))
    u = Lu(only)
    for action in (IN.READ_KEYS, IN.REPORT_CAPABILITIES):
        r = u.lu.execute(u.n[0], C.persistent_reserve_in(action, 4))
        assert triple(r) == INVALID_FIELD_IN_CDB
        assert r.sense[15:18] == bytes([0xC0, 0, 7])  # C/D=1, CDB byte 7


def test_kernel_version_compares_series() -> None:
    assert P.kernel_version("6.12.107+deb12-amd64") == (6, 12)
    assert P.kernel_version("6.1.0-57-amd64") == (6, 1) < (6, 5)
    assert P.kernel_version("7.0") == (7, 0)
    with pytest.raises(ValueError):
        P.kernel_version("unknown-kernel")


@pytest.mark.parametrize(
    "deviation", [D.SPEC_I_PT_WHERE_KNOWN, D.MOVE_NEEDS_NEXUS], ids=lambda d: d.name
)
def test_a_transport_id_without_a_nexus_is_pointed_at_where_field_pointers_are_kept(
    deviation: D.Deviation,
) -> None:
    """LIO's profiles drop field pointers: a profile with the deviation alone shows where the
    refusal of an initiator without an I_T nexus points, the TransportID (byte 24)."""
    u = Lu(P.Profile("one", "one deviation", frozenset({deviation})))
    nobody = TransportId.sas(0x50014050000000FF)
    if deviation is D.SPEC_I_PT_WHERE_KNOWN:
        r = u.out(0, SA.REGISTER, 0, A, spec_i_pt=True, transport_ids=[nobody])
    else:
        u.reg(0, A)
        u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)
        r = u.lu.execute(u.n[0], *C.register_and_move(A, K3, 2, nobody))
    assert triple(r) == INVALID_FIELD_IN_PARAMETER_LIST
    assert r.sense[15:18] == bytes([0x80, 0, 24])  # SKSV, C/D=0: parameter list byte 24
