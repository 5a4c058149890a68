"""PERSISTENT RESERVE OUT (SPC-5 6.17 and 5.14.5-5.14.11): every service action.

``SERVICE_ACTIONS`` is the table SPC-5 6.17.2 calls "PERSISTENT RESERVE OUT service actions and
valid parameters" plus the PRgeneration rule of 6.16.2: one row per service action, with
the parameter list it takes and whether success increments PRGENERATION. The handlers below
are the numbered steps of the clauses named in their docstrings.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace

from scsi_pr.sim.constants import (
    INSUFFICIENT_REGISTRATION_RESOURCES,
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
    LU_SCOPE,
    LUN_COMMUNICATION_FAILURE,
    PR_OUT_BASIC_PARAMETER_LIST_LENGTH,
    REGISTRATIONS_PREEMPTED,
    RESERVATION_TYPE_BY_CODE,
    RESERVATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    ReservationType,
    SenseKey,
)
from scsi_pr.sim.constants import (
    PersistentReserveOutAction as SA,
)
from scsi_pr.sim.deviations import (
    ALL_TG_PT_ISSUING_PORT_ONLY,
    ALL_TG_PT_KEPT,
    AR_PREEMPT_TAKES_OVER,
    GENERATION_PER_REGISTRATION,
    MOVE_FILES_TYPE_AS_SCOPE,
    MOVE_LIST_BEFORE_HOLDER,
    MOVE_NEEDS_NEXUS,
    PREEMPT_AND_ABORT_STALLS,
    PREEMPT_CHECKS_TYPE_AND_SCOPE,
    PREEMPT_KEEPS_ISSUER,
    RELEASE_SKIPS_KEY_CHECK,
    RELEASE_WRONG_TYPE,
    SCOPE_IN_PARAMETER_LIST,
    SPEC_I_PT_REGISTERS_TWICE,
    SPEC_I_PT_SKIPS_REGISTERED,
    SPEC_I_PT_WHERE_KNOWN,
    TYPE_BEFORE_REGISTRATION,
    UNREGISTER_GENERATION,
    UNREGISTERED_NOT_READY,
)
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_out_data import (
    BIT_ALL_TG_PT,
    BIT_SPEC_I_PT,
    CDB_SCOPE_TYPE,
    CDB_SERVICE_ACTION,
    MOVE_RTPI,
    PARAM_FLAGS,
    PARAM_SA_KEY,
    PARAM_TRANSPORTID_LENGTH,
    ParameterList,
    parse_basic,
    parse_move,
)
from scsi_pr.sim.profiles import SPC5, Profile
from scsi_pr.sim.result import (
    CommandResult,
    CommandTerminated,
    illegal_request,
    reservation_conflict,
)
from scsi_pr.sim.state import PersistentReservations, Registration, Reservation
from scsi_pr.sim.transportid import TransportId
from scsi_pr.sim.unit_attention import UnitAttentions

#: LIO (``UNREGISTERED_NOT_READY``): what these answer an unregistered I_T nexus while no
#: reservation exists; PREEMPT gets RESERVATION CONFLICT there too
NOT_READY_WHEN_UNREGISTERED = frozenset({SA.RESERVE, SA.RELEASE, SA.CLEAR, SA.REGISTER_AND_MOVE})
#: LIO (``TYPE_BEFORE_REGISTRATION``): while another holds a reservation, LIO refuses a PR OUT
#: before looking at it unless it is a REGISTER, or one of these from a registered nexus (any
#: service action from a registrant under a registrants-only type). Only RESERVE, PREEMPT and
#: REGISTER AND MOVE consult it (``PrOut.lio_refuses_non_holder``): the registers pass it, and
#: a RELEASE or CLEAR it refuses (from an unregistered nexus) conflicts on its key anyway.
LIO_REGISTERED_NON_HOLDER_MAY = frozenset({SA.RELEASE, SA.CLEAR, SA.PREEMPT, SA.PREEMPT_AND_ABORT})


@dataclass(slots=True)
class PrOut:
    """One PR OUT command being applied to the LU's state (slots: handlers read its fields
    many times per command)."""

    pr: PersistentReservations
    ua: UnitAttentions
    nexus: ITNexus
    params: ParameterList
    type_code: int
    scope: int
    target_ports: tuple[int, ...]
    max_registrations: int
    #: set by REPLACE LOST RESERVATION's precondition, owned by the LU
    reservation_lost: bool = False
    #: I_T nexuses whose tasks PREEMPT AND ABORT aborts (the LU reports them to its caller)
    aborted: list[ITNexus] = field(default_factory=list)
    #: which deviations from SPC-5 the LU reproduces (``scsi_pr.sim.profiles``)
    profile: Profile = SPC5
    action: SA | None = None
    #: how often success increments PRGENERATION where the rule says it does: once (SPC-5
    #: 6.16.2 counts commands); LIO: not for an unregister, once per registration made
    generations: int = 1
    #: the I_T nexuses that exist (``LogicalUnit.nexuses``)
    nexuses: Collection[ITNexus] = ()

    # -- shared steps ----------------------------------------------------------------------
    def check_key(self) -> Registration:
        """SPC-5 6.17.3: RESERVATION KEY must match the nexus's registration."""
        reg = self.pr.registrations.get(self.nexus)
        unregistered_without_reservation = reg is None and self.pr.reservation is None
        if unregistered_without_reservation and self.action in NOT_READY_WHEN_UNREGISTERED:
            raise self.profile.choose(
                UNREGISTERED_NOT_READY,
                reservation_conflict(),
                CommandTerminated(
                    CommandResult.check_condition(SenseKey.NOT_READY, LUN_COMMUNICATION_FAILURE)
                ),
            )
        if reg is None or reg.key != self.params.key:
            raise reservation_conflict()
        return reg

    def check_key_and_type(self) -> ReservationType:
        """RESERVE and PREEMPT: the issuer's key, then TYPE and SCOPE (LIO: TYPE first)."""
        if self.profile.choose(TYPE_BEFORE_REGISTRATION, False, True):
            if self.lio_refuses_non_holder():
                raise reservation_conflict()
            self.known_type()
        self.check_key()
        return self.reservation_type()

    def lio_refuses_non_holder(self) -> bool:
        res = self.pr.reservation
        if res is None or self.pr.is_holder(self.nexus):
            return False
        if self.nexus not in self.pr.registrations:
            return True
        return not (self.action in LIO_REGISTERED_NON_HOLDER_MAY or res.type.registrants_only)

    def known_type(self) -> ReservationType:
        type_ = RESERVATION_TYPE_BY_CODE.get(self.type_code)
        if type_ is None:
            raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=CDB_SCOPE_TYPE, bit=3)
        return type_

    def reservation_type(self) -> ReservationType:
        type_ = self.known_type()
        if self.scope != LU_SCOPE:
            raise self.profile.choose(
                SCOPE_IN_PARAMETER_LIST,
                illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=CDB_SCOPE_TYPE, bit=7),
                illegal_request(INVALID_FIELD_IN_PARAMETER_LIST),
            )
        return type_

    def establish(self, type_: ReservationType) -> None:
        """Make the issuer the holder (or, for all-registrants types, every registrant; LIO
        still files the issuer as "the" holder). LIO also files the CDB's scope on the
        issuer's registration, which ends a stale scope a move left there."""
        holder = self.nexus
        if type_.all_registrants:
            holder = self.profile.choose(AR_PREEMPT_TAKES_OVER, None, self.nexus)
        self.pr.reservation = Reservation(holder, type_, self.scope)
        reg = self.pr.registrations.get(self.nexus)
        if reg is not None:
            reg.lio_scope = self.scope

    def same_scope(self, res: Reservation) -> bool:
        """Does the CDB's SCOPE match the reservation's? Under LIO the holder's registration
        carries a scope of its own, and one that issued a REGISTER AND MOVE earlier holds the
        TYPE there (``MOVE_FILES_TYPE_AS_SCOPE``): then no SCOPE matches."""
        holder = None if res.holder is None else self.pr.registrations.get(res.holder)
        return res.scope == self.scope and (holder is None or holder.lio_scope == LU_SCOPE)

    def others(self) -> list[ITNexus]:
        return [n for n in self.pr.registrations if n != self.nexus]

    def unregister(self, nexus: ITNexus) -> None:
        """SPC-5 5.14.11.2: removing a registration may release the reservation."""
        res = self.pr.reservation
        del self.pr.registrations[nexus]
        if res is None:
            return
        if res.type.all_registrants:
            if not self.pr.registrations:  # the last registrant took the reservation with it
                self.pr.reservation = None
            elif res.holder == nexus:  # LIO files the first remaining registrant as holder
                self.pr.reservation = replace(res, holder=next(iter(self.pr.registrations)))
        elif res.holder == nexus:
            self.pr.reservation = None
            if res.type.registrants_only:
                self.ua.establish(self.pr.registrations, RESERVATIONS_RELEASED)

    def check_capacity(self, new: int) -> None:
        if self.pr.registrations.count + new > self.max_registrations:
            raise CommandTerminated(
                CommandResult.check_condition(
                    SenseKey.ILLEGAL_REQUEST, INSUFFICIENT_REGISTRATION_RESOURCES
                )
            )

    def nexuses_for(self, initiator: TransportId) -> list[ITNexus]:
        """I_T nexuses a new registration covers: this port only, or every target port (LIO
        on tcm_loop: this port, the registration flagged ALL_TG_PT all the same)."""
        every = self.profile.choose(ALL_TG_PT_ISSUING_PORT_ONLY, self.params.all_tg_pt, False)
        if not every and initiator is self.nexus.initiator:
            return [self.nexus]  # the issuer's own: a new equal ITNexus costs 6 % of the bench
        ports = self.target_ports if every else (self.nexus.target_port,)
        return [ITNexus(initiator, port) for port in ports]

    def ports_of(self, initiator: TransportId) -> set[int]:
        """The target ports where an I_T nexus of ``initiator``'s device exists (LIO keeps an
        ACL per initiator name, whatever the ISID)."""
        return {
            n.target_port
            for n in self.nexuses
            if n.initiator.name == initiator.name and n.initiator.protocol == initiator.protocol
        }

    def named_nexuses(self, tid: TransportId) -> list[ITNexus]:
        """The I_T nexuses a SPEC_I_PT TransportID registers (LIO: where its initiator is)."""
        if SPEC_I_PT_WHERE_KNOWN not in self.profile:
            return self.nexuses_for(tid)
        ports = self.ports_of(tid)
        if not ports:
            raise illegal_request(
                INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PARAM_TRANSPORTID_LENGTH
            )
        return [ITNexus(tid, port) for port in sorted(ports)]

    # -- REGISTER / REGISTER AND IGNORE EXISTING KEY (SPC-5 5.14.7) -------------------------
    def register(self, ignore_existing_key: bool) -> None:
        p, pr = self.params, self.pr
        reg = pr.registrations.get(self.nexus)
        if reg is None:
            if not ignore_existing_key and p.key != 0:
                raise reservation_conflict()
            if p.sa_key == 0:  # nothing to do; APTPL is ignored (5.14.7)
                self.generations = self.profile.choose(UNREGISTER_GENERATION, 1, 0)
                return
            new = self.nexuses_for(self.nexus.initiator)
            if p.transport_ids:
                self.add_specified(new)
            if not pr.registrations.keys().isdisjoint(new):
                raise illegal_request(
                    INVALID_FIELD_IN_PARAMETER_LIST,
                    param_byte=PARAM_TRANSPORTID_LENGTH if p.spec_i_pt else PARAM_FLAGS,
                    bit=None if p.spec_i_pt else BIT_ALL_TG_PT,
                )
            self.check_capacity(len(new))
            for n in new:
                pr.registrations.add(Registration(n, p.sa_key, p.all_tg_pt))
            self.generations = self.profile.choose(GENERATION_PER_REGISTRATION, 1, len(new))
        else:
            if not ignore_existing_key and p.key != reg.key:
                raise reservation_conflict()
            if p.spec_i_pt:
                raise illegal_request(
                    INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PARAM_FLAGS, bit=BIT_SPEC_I_PT
                )
            if self.profile.choose(ALL_TG_PT_KEPT, False, reg.all_tg_pt and not p.all_tg_pt):
                raise illegal_request(INVALID_FIELD_IN_CDB)  # LIO: the bit is in the list
            if p.sa_key == 0:
                self.unregister(self.nexus)
                self.generations = self.profile.choose(UNREGISTER_GENERATION, 1, 0)
            else:
                reg.key = p.sa_key
        pr.aptpl = p.aptpl

    def add_specified(self, new: list[ITNexus]) -> None:
        """SPEC_I_PT (5.14.7): the I_T nexuses the TransportIDs name join ``new``."""
        skip_registered = SPEC_I_PT_SKIPS_REGISTERED in self.profile
        twice = SPEC_I_PT_REGISTERS_TWICE in self.profile  # LIO: each mention registers
        registrations = self.pr.registrations
        for tid in self.params.transport_ids:
            new += [
                n
                for n in self.named_nexuses(tid)
                if (twice or n not in new) and not (skip_registered and n in registrations)
            ]

    # -- RESERVE (SPC-5 5.14.9) --------------------------------------------------------------
    def reserve(self) -> None:
        type_ = self.check_key_and_type()
        res = self.pr.reservation
        if res is None:
            self.establish(type_)
        elif not (self.pr.is_holder(self.nexus) and res.type == type_ and self.same_scope(res)):
            raise reservation_conflict()

    # -- RELEASE (SPC-5 5.14.11.2) -----------------------------------------------------------
    def release(self) -> None:
        registered_non_holder = self.nexus in self.pr.registrations and not self.pr.is_holder(
            self.nexus
        )
        if self.profile.choose(RELEASE_SKIPS_KEY_CHECK, False, registered_non_holder):
            return  # LIO: a registered non-holder's RELEASE is GOOD before its key is compared
        self.check_key()
        res = self.pr.reservation
        if res is None or not self.pr.is_holder(self.nexus):
            return
        if res.type != self.type_code or not self.same_scope(res):
            raise self.profile.choose(
                RELEASE_WRONG_TYPE,
                illegal_request(INVALID_RELEASE_OF_PERSISTENT_RESERVATION),
                reservation_conflict(),
            )
        self.pr.reservation = None
        if res.type.registrants_only or res.type.all_registrants:
            self.ua.establish(self.others(), RESERVATIONS_RELEASED)

    # -- CLEAR (SPC-5 5.14.11, clearing) -----------------------------------------------------
    def clear(self) -> None:
        self.check_key()
        # every registrant but the issuer's own registration (a second one of it is told too)
        mine = self.pr.registrations.get(self.nexus)
        told = _nexuses_of(self.pr.registrations.entries(), but=mine)
        self.ua.establish(told, RESERVATIONS_PREEMPTED)
        self.pr.registrations.clear()
        self.pr.reservation = None
        self.pr.aptpl = False

    # -- PREEMPT / PREEMPT AND ABORT (SPC-5 5.14.11, preempting) -----------------------------
    def preempt(self, abort: bool) -> None:
        pr, sa_key = self.pr, self.params.sa_key
        res = pr.reservation
        holder_key = None if res is None or res.holder is None else pr.key_of(res.holder)
        # Removing registrations (SARK not the holder's) ignores SCOPE and TYPE; LIO checks
        # both for every PREEMPT
        removing = sa_key != 0 and sa_key != holder_key
        if removing and not self.profile.choose(PREEMPT_CHECKS_TYPE_AND_SCOPE, False, True):
            self.check_key()
        else:
            self.check_key_and_type()  # the branches below read the fields it checked
        # Registrations, not I_T nexuses, are removed: under a LIO profile an I_T nexus may
        # hold two (``SPEC_I_PT_REGISTERS_TWICE``), and only the issuer's first one is its own.
        mine = pr.registrations.get(self.nexus)
        entries = pr.registrations.entries()
        changed = False  # preempting the holder with another TYPE or SCOPE
        if res is not None and res.type.all_registrants and sa_key == 0:
            # all-registrants and SARK 0: the others' registrations go, the issuer reserves anew
            removed = [r for r in entries if r is not mine]
            self.establish(self.reservation_type())
        elif sa_key == 0:
            raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PARAM_SA_KEY)
        elif not removing:
            # preempting the holder moves the reservation to the issuer (LIO: also the holder
            # it files for an all-registrants type, see ``establish``)
            assert res is not None
            type_ = self.reservation_type()
            removed = [r for r in entries if r.key == sa_key and r is not mine]
            changed = res.type != type_ or not self.same_scope(res)
            self.establish(type_)
        else:
            # removing registrations: only registrations go; the reservation (if any) stays
            removed = [r for r in entries if r.key == sa_key]
            if not removed:
                raise reservation_conflict()
            if res is not None and res.type.all_registrants and any(r is mine for r in removed):
                removed = self.profile.choose(
                    PREEMPT_KEEPS_ISSUER, removed, [r for r in removed if r is not mine]
                )
        for reg in removed:
            pr.registrations.remove(reg)
        left = pr.reservation
        if left is not None and left.type.all_registrants and not pr.registrations:
            pr.reservation = None
        if changed:  # the survivors: every I_T nexus still registered but the issuer
            self.ua.establish(self.others(), RESERVATIONS_RELEASED)
        preempted = _nexuses_of(removed, but=mine)
        self.ua.establish(preempted, REGISTRATIONS_PREEMPTED)
        if abort:
            self.aborted = [n for n in preempted if n != self.nexus]

    # -- REGISTER AND MOVE (SPC-5 5.14.8) ----------------------------------------------------
    def register_and_move(self) -> None:
        p, pr = self.params, self.pr
        lio_first = self.profile.choose(TYPE_BEFORE_REGISTRATION, False, True)
        if lio_first and self.lio_refuses_non_holder():  # LIO's check of a non-holder: first
            raise reservation_conflict()
        self.check_key()
        res = pr.reservation
        # SPC-5's table of REGISTER AND MOVE behaviours: a registered non-holder's parameter
        # list is ignored (LIO checks the list first)
        not_holder = res is not None and (res.type.all_registrants or res.holder != self.nexus)
        if not_holder and not self.profile.choose(MOVE_LIST_BEFORE_HOLDER, False, True):
            raise reservation_conflict()
        # The parameter list before "no reservation": SPC-5 does not order these, and this is
        # LIO's order (the lockstep differential found a zero SARK answered 26h with no
        # reservation to move, on 6.1).
        if p.sa_key == 0:
            raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PARAM_SA_KEY)
        if p.relative_target_port not in self.target_ports:
            raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST, param_byte=MOVE_RTPI)
        dest = ITNexus(p.transport_ids[0], p.relative_target_port)
        # A TransportID "the same as the initiator port of the I_T nexus for the command
        # received" is refused whatever target port it names: the initiator port is compared,
        # not the I_T nexus (SPC-4's REGISTER AND MOVE parameter list clause as LIO quotes it;
        # LIO alike). A format 00b iSCSI TransportID names every port of its device, the
        # issuer's among them (LIO: 26h for the name alone).
        if p.transport_ids[0].matches(self.nexus.initiator):
            raise illegal_request(
                INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PR_OUT_BASIC_PARAMETER_LIST_LENGTH
            )
        if MOVE_NEEDS_NEXUS in self.profile and dest.target_port not in self.ports_of(
            dest.initiator
        ):
            raise illegal_request(
                INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PR_OUT_BASIC_PARAMETER_LIST_LENGTH
            )
        if res is None:
            raise illegal_request(INVALID_FIELD_IN_CDB)  # SPC-5 5.14.8; LIO alike
        if not_holder:
            raise reservation_conflict()
        if dest in pr.registrations:
            pr.registrations[dest].key = p.sa_key
        else:
            self.check_capacity(1)
            pr.registrations[dest] = Registration(dest, p.sa_key)
        pr.reservation = Reservation(dest, res.type, res.scope)
        pr.registrations[self.nexus].lio_scope = self.profile.choose(
            MOVE_FILES_TYPE_AS_SCOPE, LU_SCOPE, int(res.type)
        )
        if p.unreg:
            del pr.registrations[self.nexus]
        pr.aptpl = p.aptpl

    # -- REPLACE LOST RESERVATION (SPC-5 5.14.5, 5.14.11, 6.17.2) ----------------------------
    def replace_lost_reservation(self) -> None:
        """Only after the LU lost its PR information (``LogicalUnit.lose_reservations``;
        otherwise INVALID RELEASE OF PERSISTENT RESERVATION): the prior registrations go
        without unit attentions, the issuer becomes the only registrant and the holder."""
        if not self.reservation_lost:
            raise illegal_request(INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
        type_ = self.reservation_type()
        if self.params.sa_key == 0:
            raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PARAM_SA_KEY)
        self.pr.registrations.clear()
        self.pr.registrations[self.nexus] = Registration(self.nexus, self.params.sa_key)
        self.establish(type_)
        self.pr.generation = 0  # SPC-5: PRgeneration starts again


@dataclass(frozen=True)
class ServiceActionRule:
    apply: Callable[[PrOut], None]
    parse: Callable[[bytes, SA], ParameterList] = parse_basic
    bumps_generation: bool = False


SERVICE_ACTIONS: dict[SA, ServiceActionRule] = {
    SA.REGISTER: ServiceActionRule(lambda c: c.register(False), bumps_generation=True),
    SA.RESERVE: ServiceActionRule(PrOut.reserve),
    SA.RELEASE: ServiceActionRule(PrOut.release),
    SA.CLEAR: ServiceActionRule(PrOut.clear, bumps_generation=True),
    SA.PREEMPT: ServiceActionRule(lambda c: c.preempt(False), bumps_generation=True),
    SA.PREEMPT_AND_ABORT: ServiceActionRule(lambda c: c.preempt(True), bumps_generation=True),
    SA.REGISTER_AND_IGNORE_EXISTING_KEY: ServiceActionRule(
        lambda c: c.register(True), bumps_generation=True
    ),
    SA.REGISTER_AND_MOVE: ServiceActionRule(
        PrOut.register_and_move, parse_move, bumps_generation=True
    ),
    # it sets PRgeneration to zero itself (SPC-5 5.14.11, replacing lost reservations)
    SA.REPLACE_LOST_RESERVATION: ServiceActionRule(PrOut.replace_lost_reservation),
}


_RULES_BY_CODE = {int(action): (action, rule) for action, rule in SERVICE_ACTIONS.items()}


def _nexuses_of(registrations: Iterable[Registration], but: Registration | None) -> list[ITNexus]:
    """The I_T nexuses of ``registrations``, each once, in order, leaving out the registration
    ``but`` only (the issuer's own: its nexus is still named for a second registration it holds
    under a LIO profile, ``SPEC_I_PT_REGISTERS_TWICE``)."""
    return list(dict.fromkeys(r.nexus for r in registrations if r is not but))


def never_completing(profile: Profile) -> frozenset[SA]:
    """The service actions that take effect but are never answered under ``profile``: LIO on
    tcm_loop never completes a PREEMPT AND ABORT (``PREEMPT_AND_ABORT_STALLS``)."""
    return profile.choose(PREEMPT_AND_ABORT_STALLS, frozenset(), frozenset({SA.PREEMPT_AND_ABORT}))


def rule_for(cdb: bytes) -> tuple[SA, ServiceActionRule]:
    found = _RULES_BY_CODE.get(cdb[1] & 0x1F)
    if found is None:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=CDB_SERVICE_ACTION, bit=4)
    return found
