"""Target ports and initiator ports: which I_T nexuses a registration or a move names.

A registration belongs to an I_T nexus, an initiator port and a target port together (SAM-5
4.7); ALL_TG_PT asks for every target port at once, and REGISTER AND MOVE names an initiator
port and a target port apart. LIO registers only I_T nexuses it knows (its ACLs), which on
tcm_loop are the loopback nexuses the rig built: the entries ``all-tg-pt-*`` say how that
shows.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prout_common import GUESSED, SPEC_I_PT_ALL_TG_PT
from prtest import (
    SA,
    drain,
    expect_check,
    expect_conflict,
    expect_good,
    expect_invalid_field_in_cdb,
    expect_refused,
    full_status,
    move,
    nexus_paths,
    path_refuses_moves,
    paths,
    prout,
    read_keys,
    read_reservation,
    register,
    reserve,
)

from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_PARAMETER_LIST,
    ProtocolIdentifier,
    ReservationType,
    SenseKey,
)
from scsi_pr.sim.profiles import Profile
from scsi_pr.sim.transportid import TransportId

A, B, C3 = 0xA1, 0xB2, 0xC3
WE = ReservationType.WRITE_EXCLUSIVE
ILLEGAL = SenseKey.ILLEGAL_REQUEST
MOVES = pytest.mark.path_limit(L.IOCTL_NO_REGISTER_AND_MOVE.name)
PER_PATH = pytest.mark.path_limit(L.MPATH_REGISTRATION_PER_PATH.name)


@SPEC_I_PT_ALL_TG_PT
@PER_PATH
@GUESSED
@pytest.mark.lio_deviation(D.ALL_TG_PT_ISSUING_PORT_ONLY.name)
@pytest.mark.lio_deviation(D.ALL_TG_PT_KEPT.name)
def test_register_all_target_ports(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.7: ALL_TG_PT registers the initiator port with every target port of the LU
    (those the initiators here come through among them), each registration flagged ALL_TG_PT;
    a later REGISTER AND IGNORE EXISTING KEY without the bit changes the issuing I_T nexus's
    key, and an unregister removes that registration only. LIO on tcm_loop registers the
    issuing I_T nexus alone (RELATIVE TARGET PORT IDENTIFIER 0) and refuses both without
    ALL_TG_PT (INVALID FIELD IN CDB) until the bit is set again."""
    a, b, _ = nexuses
    r = prout(a, SA.REGISTER, 0, A, all_tg_pt=True)
    if L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.name in path_limits:
        expect_refused(r, L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT)
        assert read_keys(b)[1] == []
        return
    expect_good(r)
    mine = full_status(b).descriptors
    assert all(d.key == A and d.all_tg_pt and not d.r_holder for d in mine), mine
    issuing = paths(a)  # the registrations a REGISTER without ALL_TG_PT makes
    lio = D.ALL_TG_PT_ISSUING_PORT_ONLY in device_profile
    if lio:
        got = sorted((d.transport_id, d.relative_target_port) for d in mine)
        assert got == sorted((tid.encode(), 0) for tid, _ in nexus_paths(a))
    else:
        ports = [d.relative_target_port for d in mine]
        assert {d.transport_id for d in mine} == {a.transport_id.encode()}
        assert len(set(ports)) == len(ports) >= issuing
        assert {it.relative_target_port for it in nexuses} <= set(ports)
    others = len(mine) - issuing  # registrations on the target ports a did not come through

    r = prout(a, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, B)
    if D.ALL_TG_PT_KEPT in device_profile:
        expect_invalid_field_in_cdb(r, path_limits)
        assert read_keys(b)[1] == [A] * issuing
        expect_good(prout(a, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, B, all_tg_pt=True))
    else:
        expect_good(r)
    assert sorted(read_keys(b)[1]) == sorted([B] * issuing + [A] * others)

    r = prout(a, SA.REGISTER, B, 0)
    if D.ALL_TG_PT_KEPT in device_profile:
        expect_invalid_field_in_cdb(r, path_limits)
        assert read_keys(b)[1] == [B] * issuing
        r = prout(a, SA.REGISTER, B, 0, all_tg_pt=True)
    expect_good(r)
    assert read_keys(b)[1] == [A] * others


@MOVES
def test_register_and_move_to_its_initiator_port_through_another_target_port(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    """A TransportID naming the issuer's own initiator port is INVALID FIELD IN PARAMETER
    LIST whatever port RELATIVE TARGET PORT IDENTIFIER names: the initiator port is compared,
    not the I_T nexus (SPC-4's REGISTER AND MOVE parameter list clause as LIO quotes it; LIO
    alike). Here the target port is another initiator's."""
    a, b, _ = nexuses
    register(a, A)
    reserve(a, A, WE)
    r = move(
        a,
        A,
        B,
        SimpleNamespace(transport_id=a.transport_id, relative_target_port=b.relative_target_port),
    )
    if not path_refuses_moves(r, path_limits):
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
    assert read_reservation(a)[1] == (A, WE)
    assert read_keys(a)[1] == [A] * paths(a)


def _nexuses_of(nexuses: list) -> set[tuple[object, int]]:
    """Every I_T nexus the test's initiators come through (a multipath host's per path)."""
    return {path for it in nexuses for path in nexus_paths(it)}


def _nobody(tid: TransportId) -> TransportId:
    """A TransportID of the same protocol whose initiator has no I_T nexus with the LU."""
    if tid.protocol == ProtocolIdentifier.ISCSI:
        return tid._replace(name=f"{tid.name}-nobody")
    return tid._replace(name=tid.name[:-2] + "ff")  # SAS naa.<hex>, FC <hex>: the rig's end 0x


@SPEC_I_PT_ALL_TG_PT
@pytest.mark.lio_deviation(D.SPEC_I_PT_WHERE_KNOWN.name)
@pytest.mark.lio_deviation(D.SPEC_I_PT_SKIPS_REGISTERED.name)
@pytest.mark.lio_deviation(D.GENERATION_PER_REGISTRATION.name)
@pytest.mark.parametrize("named", ["another-initiator", "registered", "nobody"])
def test_spec_i_pt_registers_the_named_initiator(
    nexuses: list, named: str, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.7: SPEC_I_PT registers each TransportID's initiator port with the target
    port the command came through, refuses an I_T nexus already registered (INVALID FIELD IN
    PARAMETER LIST), and the command increments PRGENERATION once. LIO registers a
    TransportID where its initiator has an I_T nexus (on the rig: its own target port),
    skips one registered there already, refuses one whose initiator has none, and counts each
    registration it makes. ``registered``: b registered itself first."""
    _, b, c = nexuses
    before = []
    if named == "registered":
        register(b, B)
        before = [(B, t.encode(), port) for t, port in nexus_paths(b)]
    tid = _nobody(b.transport_id) if named == "nobody" else b.transport_id
    generation = read_keys(b)[0]
    r = prout(c, SA.REGISTER, 0, C3, spec_i_pt=True, transport_ids=[tid])
    if L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.name in path_limits:
        expect_refused(r, L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT)
        assert read_keys(b) == (generation, [B] * len(before))
        return
    lio = D.SPEC_I_PT_WHERE_KNOWN in device_profile
    if lio:
        ports = {port for t, port in _nexuses_of(nexuses) if t.name == tid.name}
    else:
        ports = {port for _, port in nexus_paths(c)}
    issuer = {(t.encode(), port) for t, port in nexus_paths(c)}
    named_ones = {(tid.encode(), port) for port in ports}
    taken = {(t, port) for _, t, port in before}
    if not ports or (taken & named_ones and D.SPEC_I_PT_SKIPS_REGISTERED not in device_profile):
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
        assert read_keys(b) == (generation, [B] * len(before))
        return
    expect_good(r)
    made = issuer | (named_ones - taken)
    listed = sorted(
        (d.key, d.transport_id, d.relative_target_port) for d in full_status(b).descriptors
    )
    assert listed == sorted(before + [(C3, t, port) for t, port in made])
    counted = len(made) if D.GENERATION_PER_REGISTRATION in device_profile else 1
    assert read_keys(b)[0] == generation + counted


@MOVES
@pytest.mark.lio_deviation(D.MOVE_NEEDS_NEXUS.name)
def test_register_and_move_to_an_initiator_not_on_that_port(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.8: the reservation moves to the I_T nexus of the TransportID's initiator
    port and the target port RELATIVE TARGET PORT IDENTIFIER names, here a pair no initiator
    comes through on the rig (c's initiator, b's target port). LIO refuses a destination its
    ACLs do not have: INVALID FIELD IN PARAMETER LIST."""
    a, b, c = nexuses
    register(a, A)
    reserve(a, A, WE)
    dest = SimpleNamespace(transport_id=c.transport_id, relative_target_port=b.relative_target_port)
    r = move(a, A, C3, dest)
    if path_refuses_moves(r, path_limits):
        return
    exists = (c.transport_id, b.relative_target_port) in _nexuses_of(nexuses)
    if D.MOVE_NEEDS_NEXUS in device_profile and not exists:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
        assert read_reservation(a)[1] == (A, WE)
        return
    expect_good(r)
    assert read_reservation(a)[1] == (C3, WE)
    holder = [
        (d.transport_id, d.relative_target_port) for d in full_status(b).descriptors if d.r_holder
    ]
    assert holder == [(c.transport_id.encode(), b.relative_target_port)]


def _named(nexuses: list, tid: TransportId, issuer: object, profile: Profile) -> list:
    """(TransportID, port) pairs a SPEC_I_PT TransportID names: with the issuer's target
    ports (SPC-5), or wherever its initiator has an I_T nexus (LIO, ``spec-i-pt-registers-
    where-the-initiator-is``)."""
    if D.SPEC_I_PT_WHERE_KNOWN in profile:
        ports = sorted({port for t, port in _nexuses_of(nexuses) if t.name == tid.name})
    else:
        ports = [port for _, port in nexus_paths(issuer)]
    return [(tid.encode(), port) for port in ports]


def _registered_naming(issuer: object, tids: list, path_limits: frozenset[str]) -> bool:
    """``issuer`` registers C3 with SPEC_I_PT naming ``tids``: True when GOOD, False when the
    path cannot carry SPEC_I_PT (and refused it, as it says)."""
    r = prout(issuer, SA.REGISTER, 0, C3, spec_i_pt=True, transport_ids=tids)
    if L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.name in path_limits:
        expect_refused(r, L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT)
        return False
    expect_good(r)
    return True


def _listed(it: object) -> list:
    """(TransportID, RELATIVE TARGET PORT IDENTIFIER) of every registration, sorted."""
    return sorted((d.transport_id, d.relative_target_port) for d in full_status(it).descriptors)


@SPEC_I_PT_ALL_TG_PT
@pytest.mark.lio_deviation(D.SPEC_I_PT_REGISTERS_TWICE.name)
def test_spec_i_pt_naming_the_issuer_registers_it_twice(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.7: a TransportID naming the issuing I_T nexus adds nothing to its own
    registration (the model's reading: one registration per I_T nexus). LIO files a second
    registration of it: READ KEYS lists the key twice and PRGENERATION counts both; a
    REGISTER changes the first one's key, an unregister removes the first one, and the second
    then answers for that I_T nexus."""
    _, b, c = nexuses
    generation = read_keys(b)[0]
    if not _registered_naming(c, [c.transport_id], path_limits):
        return
    own = [(t.encode(), port) for t, port in nexus_paths(c)]
    named = _named(nexuses, c.transport_id, c, device_profile)
    twice = D.SPEC_I_PT_REGISTERS_TWICE in device_profile
    made = own + (named if twice else [n for n in named if n not in own])
    assert _listed(b) == sorted(made)
    counted = len(made) if D.GENERATION_PER_REGISTRATION in device_profile else 1
    assert read_keys(b) == (generation + counted, [C3] * len(made))
    seconds = len(made) - len(own)

    expect_good(prout(c, SA.REGISTER, C3, A))
    assert read_keys(b)[1] == [A] * len(own) + [C3] * seconds
    expect_good(prout(c, SA.REGISTER, A, 0))
    assert read_keys(b)[1] == [C3] * seconds
    if seconds:
        expect_good(prout(c, SA.REGISTER, C3, 0))
        assert read_keys(b)[1] == []


@SPEC_I_PT_ALL_TG_PT
@pytest.mark.lio_deviation(D.SPEC_I_PT_REGISTERS_TWICE.name)
def test_spec_i_pt_naming_a_port_twice_registers_it_twice(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.7: one TransportID listed twice registers its I_T nexus once (the model's
    reading). LIO registers it once per mention; a PREEMPT of the key removes every
    registration holding it."""
    a, b, c = nexuses
    if not _registered_naming(c, [b.transport_id, b.transport_id], path_limits):
        return
    own = [(t.encode(), port) for t, port in nexus_paths(c)]
    named = _named(nexuses, b.transport_id, c, device_profile)
    made = own + named * (2 if D.SPEC_I_PT_REGISTERS_TWICE in device_profile else 1)
    assert _listed(a) == sorted(made)
    assert read_keys(a)[1] == [C3] * len(made)

    register(a, A)
    expect_good(prout(a, SA.PREEMPT, A, C3, WE))
    assert read_keys(a)[1] == [A] * paths(a)


@SPEC_I_PT_ALL_TG_PT
@pytest.mark.lio_deviation(D.SPEC_I_PT_REGISTERS_TWICE.name)
def test_preempting_its_own_second_registration_tells_the_issuer(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """LIO: only an I_T nexus's first registration is its own. When the issuer's PREEMPT
    removes its second one (``spec-i-pt-registers-twice``: same nexus, the key it had before a
    REGISTER changed the first), the first stays and the issuer is told REGISTRATIONS
    PREEMPTED, as any nexus that lost a registration. SPC-5 (one registration per I_T nexus):
    nobody holds that key any more, RESERVATION CONFLICT."""
    _, b, c = nexuses
    if not _registered_naming(c, [c.transport_id], path_limits):
        return
    expect_good(prout(c, SA.REGISTER, C3, A))  # changes the first registrations only
    first = [A] * paths(c)
    r = prout(c, SA.PREEMPT, A, C3, WE)
    if D.SPEC_I_PT_REGISTERS_TWICE not in device_profile:
        expect_conflict(r)
        assert read_keys(b)[1] == first
        assert drain(c) == []
        return
    expect_good(r)
    assert read_keys(b)[1] == first
    assert drain(c) == [(0x2A, 0x05)]


@SPEC_I_PT_ALL_TG_PT
@pytest.mark.lio_deviation(D.SPEC_I_PT_REGISTERS_TWICE.name)
def test_clearing_with_its_own_second_registration_tells_the_issuer(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """LIO: a CLEAR tells every registration but the issuer's first one, so an issuer whose
    SPEC_I_PT named itself (``spec-i-pt-registers-twice``) is told RESERVATIONS PREEMPTED by
    its own CLEAR (found by the lockstep differential). SPC-5: the issuer is never told."""
    _, _, c = nexuses
    if not _registered_naming(c, [c.transport_id], path_limits):
        return
    expect_good(prout(c, SA.CLEAR, C3))
    told = [(0x2A, 0x03)] if D.SPEC_I_PT_REGISTERS_TWICE in device_profile else []
    assert drain(c) == told
