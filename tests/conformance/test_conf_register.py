"""REGISTER and REGISTER AND IGNORE EXISTING KEY on every backend (SPC-5 5.14.7): keys,
unregistering, the parameter list's length, SPEC_I_PT, the reserved service action codes.
What every test checks: ``prout_common``."""

from __future__ import annotations

import pytest
from prout_common import (
    C3,
    ILLEGAL,
    KEY_CHECKED,
    PER_PATH,
    SPEC_I_PT_ALL_TG_PT,
    WE,
    WE_AR,
    WE_RO,
    A,
    B,
    expect_wrong_key,
)
from prtest import (
    SA,
    drain,
    expect_check,
    expect_conflict,
    expect_good,
    expect_ua,
    paths,
    prout,
    read_keys,
    read_reservation,
    register,
    reserve,
)

from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import cdb as C
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    PARAMETER_LIST_LENGTH_ERROR,
    RESERVATIONS_RELEASED,
    Status,
)
from scsi_pr.sim.profiles import Profile


# -- REGISTER / REGISTER AND IGNORE EXISTING KEY ---------------------------------------------
@PER_PATH
def test_register_then_change_key(nexuses: list) -> None:
    a = nexuses[0]
    n = paths(a)
    gen, keys = read_keys(a)
    assert keys == []
    register(a, A)
    assert read_keys(a) == (gen + n, [A] * n)
    expect_good(prout(a, SA.REGISTER, A, B))
    assert read_keys(a) == (gen + 2 * n, [B] * n)


@pytest.mark.lio_deviation(D.UNREGISTER_GENERATION.name)
@pytest.mark.parametrize("action", [SA.REGISTER, SA.REGISTER_AND_IGNORE_EXISTING_KEY])
def test_unregister_bumps_generation(nexuses: list, device_profile: Profile, action: SA) -> None:
    a = nexuses[0]
    register(a, A)
    gen, _ = read_keys(a)
    expect_good(prout(a, action, A, 0))
    bump = device_profile.choose(D.UNREGISTER_GENERATION, 1, 0)
    assert read_keys(a) == (gen + bump, [])


@pytest.mark.lio_deviation(D.UNREGISTER_GENERATION.name)
@pytest.mark.parametrize("action", [SA.REGISTER, SA.REGISTER_AND_IGNORE_EXISTING_KEY])
def test_register_zero_key_unregistered_bumps_generation(
    nexuses: list, device_profile: Profile, action: SA
) -> None:
    a = nexuses[0]
    gen, _ = read_keys(a)
    expect_good(prout(a, action, 0, 0))  # nothing to register: GOOD, nothing changes
    bump = device_profile.choose(D.UNREGISTER_GENERATION, 1, 0)
    assert read_keys(a) == (gen + bump, [])


@KEY_CHECKED
@PER_PATH
@pytest.mark.parametrize("rk", [B, 0], ids=["wrong-key", "zero-key"])
def test_register_with_wrong_key_conflicts(
    nexuses: list, rk: int, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A)
    gen, _ = read_keys(a)
    expect_wrong_key(prout(a, SA.REGISTER, rk, C3), path_limits)
    assert read_keys(a) == (gen, [A] * paths(a)), "a conflict changes nothing, PRgeneration too"


def test_register_unregistered_with_nonzero_key_conflicts(nexuses: list) -> None:
    expect_conflict(prout(nexuses[0], SA.REGISTER, A, B))
    assert read_keys(nexuses[0])[1] == []


@PER_PATH
def test_register_and_ignore_existing_key(nexuses: list) -> None:
    a = nexuses[0]
    n = paths(a)
    gen, _ = read_keys(a)
    expect_good(prout(a, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0x999, A))
    expect_good(prout(a, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0x999, B))
    assert read_keys(a) == (gen + 2 * n, [B] * n)


def test_new_key_is_carried_by_the_reservation(nexuses: list) -> None:
    a = nexuses[0]
    register(a, A)
    reserve(a, A, WE)
    expect_good(prout(a, SA.REGISTER, A, B))
    assert read_reservation(a)[1] == (B, WE)


def test_holder_unregistering_releases_ro_with_ua(nexuses: list) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE_RO)
    expect_good(prout(a, SA.REGISTER, A, 0))
    assert read_reservation(a)[1] is None
    expect_ua(b.execute(C.test_unit_ready()), RESERVATIONS_RELEASED)
    assert drain(c) == [], "an unregistered I_T nexus is not told"


def test_all_registrants_reservation_outlives_its_first_registrant(nexuses: list) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE_AR)
    expect_good(prout(a, SA.REGISTER, A, 0))
    assert read_reservation(b)[1] == (0, WE_AR)
    expect_good(prout(b, SA.REGISTER, B, 0))
    assert read_reservation(b)[1] is None, "released with the last registrant"


@SPEC_I_PT_ALL_TG_PT
def test_spec_i_pt_only_with_register(nexuses: list) -> None:
    """Refused by the device, and on the ioctl path by the helper: the same answer."""
    a, b, _ = nexuses
    register(a, A)
    r = prout(a, SA.RESERVE, A, 0, WE, spec_i_pt=True, transport_ids=[b.transport_id])
    expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
    assert L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.refusal.asc == INVALID_FIELD_IN_PARAMETER_LIST.asc


PARAMETERS_REBUILT = pytest.mark.path_limit(L.MPATH_PARAMETER_LIST_REBUILT.name)


@SPEC_I_PT_ALL_TG_PT
@PARAMETERS_REBUILT
def test_spec_i_pt_from_registered_nexus_is_invalid(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    r = prout(a, SA.REGISTER, A, B, spec_i_pt=True, transport_ids=[b.transport_id])
    if L.MPATH_PARAMETER_LIST_REBUILT.name not in path_limits:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
        return
    # libmpathpersist registers down every path at once, its threads sharing one parameter
    # list; it clears SPEC_I_PT there for the second path while the first path's thread may
    # not yet have built its command from it: a race, seen both ways (the refusal on a loaded
    # machine). The other paths always go without SPEC_I_PT: their key changes to B.
    if r.status == Status.GOOD:
        assert set(read_keys(a)[1]) == {B}  # the first path too went without it
    else:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)  # LIO refused the first path
        assert set(read_keys(a)[1]) == {A, B}  # which kept A; the library undoes nothing


@PARAMETERS_REBUILT
@pytest.mark.parametrize("length", [0, 20, 23, 25, 28])
def test_parameter_list_length_must_be_24(
    nexuses: list, length: int, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    data = C.pr_out_parameters(0, A).ljust(length, b"\0")[:length]
    r = a.execute(C.persistent_reserve_out(SA.REGISTER, length), data)
    if length == 28 and L.MPATH_PARAMETER_LIST_REBUILT.name in path_limits:
        expect_good(r)  # an empty TransportID list: the library sends the 24 bytes
        assert read_keys(a)[1] == [A] * paths(a)
        return
    expect_check(r, ILLEGAL, PARAMETER_LIST_LENGTH_ERROR)
    assert read_keys(a)[1] == []


@pytest.mark.parametrize("action", [0x09, 0x1F])
def test_reserved_service_action(nexuses: list, action: int) -> None:
    a = nexuses[0]
    register(a, A)
    expect_check(prout(a, action, A), ILLEGAL, INVALID_FIELD_IN_CDB)
