"""The registry of LIO's deviations from SPC-5: one named entry per way LIO answers otherwise.

Each entry names the situation, the SPC-5 clause, what the standard requires, what LIO answers
and on which kernels that was measured, and the conformance tests that assert LIO's answer on
the real LUN (``docs/lio-deviations.md`` is generated from it: ``scsi-pr profiles doc``). A
profile (``scsi_pr.sim.profiles``) is a set of these; the model consults its LU's profile at
the decision points the entries name. A kernel is "measured" for an entry only when that
entry's tests ran on it against LIO and passed asserting the answer written here.
"""

from __future__ import annotations

from dataclasses import dataclass

CONF = "tests/conformance/"
#: the kernels the LIO entries were measured on: Debian 12's 6.1 (6.1.0-57-amd64) and 6.12
#: (6.12.107+deb12-amd64), tcm_loop and a ramdisk backstore, in the VM (``scsi-pr vm run``)
KERNEL_6_1 = "6.1"
KERNEL_6_12 = "6.12"
#: entries whose answer the conformance suite asserted on both kernels' LIO
BOTH_KERNELS = frozenset({KERNEL_6_1, KERNEL_6_12})


@dataclass(frozen=True, eq=False)
class Deviation:
    """One way LIO answers differently from SPC-5 (clauses of SPC-5 r17, docs/model.md).

    Each is a registry singleton, so equality is identity: ``Profile.choose`` looks one up at
    every decision point, and hashing all the fields each time was a tenth of the model's time.
    """

    #: stable identifier: the conformance marks and the PR machine's branch tags use it
    name: str
    #: the situation, in one line
    title: str
    clause: str
    #: the standard's answer
    requires: str
    #: LIO's answer (status, sense, data or state)
    lio_answer: str
    #: conformance tests (node ids, a parameter id where the entry covers only some cases)
    tests: tuple[str, ...]
    #: kernels whose LIO gave ``lio_answer`` to ``tests``
    measured_on: frozenset[str] = frozenset({KERNEL_6_1})
    note: str = ""


def _tests(*names: str) -> tuple[str, ...]:
    return tuple(CONF + n for n in names)


# -- the registry ------------------------------------------------------------------------------
RELEASE_WRONG_TYPE = Deviation(
    "release-wrong-type-conflict",
    "RELEASE by the holder with a TYPE or SCOPE other than the reservation's",
    "SPC-5 5.14.11.2",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION (05h/26h/04h)",
    "RESERVATION CONFLICT; the reservation stays",
    _tests("test_conf_reserve.py::test_release_with_wrong_type"),
    measured_on=BOTH_KERNELS,
)
UNREGISTERED_NOT_READY = Deviation(
    "unregistered-not-ready",
    "RESERVE, RELEASE, CLEAR or REGISTER AND MOVE from an unregistered I_T nexus while no "
    "reservation exists",
    "SPC-5 6.17.3",
    "RESERVATION CONFLICT (the RESERVATION KEY matches no registration)",
    "CHECK CONDITION, NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (02h/08h/00h); while a "
    "reservation exists, RESERVATION CONFLICT as SPC-5 says",
    _tests(
        "test_conf_reserve.py::test_unregistered_reserve_conflicts",
        "test_conf_reserve.py::test_unregistered_release_conflicts",
        "test_conf_reserve.py::test_unregistered_clear_conflicts",
        "test_conf_move.py::test_unregistered_register_and_move_conflicts",
    ),
    note="PREEMPT from an unregistered I_T nexus gets RESERVATION CONFLICT on LIO too.",
    measured_on=BOTH_KERNELS,
)
UNREGISTER_GENERATION = Deviation(
    "unregister-keeps-generation",
    "REGISTER or REGISTER AND IGNORE EXISTING KEY with SERVICE ACTION RESERVATION KEY zero",
    "SPC-5 6.16.2",
    "PRGENERATION incremented (the command completed successfully)",
    "PRGENERATION unchanged, both when a registration is removed and when an unregistered "
    "I_T nexus registers key zero (nothing to do)",
    _tests(
        "test_conf_register.py::test_unregister_bumps_generation",
        "test_conf_register.py::test_register_zero_key_unregistered_bumps_generation",
    ),
    measured_on=BOTH_KERNELS,
)
MOVE_LIST_BEFORE_HOLDER = Deviation(
    "register-and-move-list-before-holder",
    "REGISTER AND MOVE with a bad parameter list (SERVICE ACTION RESERVATION KEY zero, a "
    "TransportID naming the issuer) from a registered I_T nexus that does not hold the "
    "reservation, under a registrants-only or all-registrants type",
    "SPC-5 5.14.8 (the table of REGISTER AND MOVE behaviours)",
    "RESERVATION CONFLICT: on a registered I_T nexus that is not the reservation holder every "
    "parameter list field is ignored",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (05h/26h/00h): the "
    "parameter list is checked before the holder (under WE and EA LIO's own check of a "
    "non-holder answers RESERVATION CONFLICT first, see reserved-type-before-registration)",
    _tests(
        "test_conf_move.py::test_the_move_parameter_list_is_checked_before_the_reservation",
    ),
    measured_on=BOTH_KERNELS,
)
MOVE_FILES_TYPE_AS_SCOPE = Deviation(
    "register-and-move-files-type-as-scope",
    "a reservation REGISTER AND MOVE (UNREG=0) carried away comes back to the issuer's I_T nexus",
    "SPC-5 5.14.8, 5.14.9, 5.14.11.2",
    "the reservation has the same TYPE and SCOPE as before: the holder's RESERVE of that type "
    "is GOOD and changes nothing, its RELEASE releases it",
    "the move files the TYPE in the issuer's own registration as its scope, so once that I_T "
    "nexus holds the reservation again, its RESERVE and RELEASE with the right TYPE answer "
    "RESERVATION CONFLICT, and a PREEMPT of it tells the survivors RESERVATIONS RELEASED (2Ah/04h) "
    "as for a changed scope; a RESERVE or PREEMPT by that nexus ends it",
    _tests(
        "test_conf_move.py::test_a_reservation_moved_back_to_its_issuer[RESERVE]",
        "test_conf_move.py::test_a_reservation_moved_back_to_its_issuer[RELEASE]",
        "test_conf_move.py::test_a_reservation_moved_back_to_its_issuer[PREEMPT]",
    ),
    note="found by CI's PR state machine on LIO; the register-and-move code stores the "
    "reservation TYPE where the SCOPE belongs, on the issuer's registration",
    measured_on=BOTH_KERNELS,
)
SCOPE_IN_PARAMETER_LIST = Deviation(
    "reserved-scope-invalid-parameter-list",
    "RESERVE or PREEMPT with a SCOPE other than LU_SCOPE",
    "SPC-5 6.17.1",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05h/24h/00h): SCOPE is a CDB field",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (05h/26h/00h)",
    _tests("test_conf_reserve.py::test_reserve_with_reserved_scope"),
    note="RELEASE by the holder with another SCOPE is release-wrong-type-conflict.",
    measured_on=BOTH_KERNELS,
)
PREEMPT_CHECKS_TYPE_AND_SCOPE = Deviation(
    "preempt-checks-type-and-scope",
    "PREEMPT or PREEMPT AND ABORT that only removes registrations (its SERVICE ACTION "
    "RESERVATION KEY is not the holder's) with a reserved TYPE or a SCOPE other than LU_SCOPE",
    "SPC-5 5.14.11 (preempting: removing registrations)",
    "the SCOPE and TYPE fields are ignored: the registrations with that key go (GOOD)",
    "CHECK CONDITION, ILLEGAL REQUEST: INVALID FIELD IN CDB (05h/24h/00h) for the TYPE, "
    "INVALID FIELD IN PARAMETER LIST (05h/26h/00h) for the SCOPE; nothing is removed",
    _tests("test_conf_preempt.py::test_preempt_removing_registrations_ignores_type_and_scope"),
    measured_on=BOTH_KERNELS,
)
ALLOCATION_LENGTH_MINIMUM = Deviation(
    "pr-in-allocation-length-minimum",
    "PERSISTENT RESERVE IN with an ALLOCATION LENGTH below 8 (below 6 for REPORT "
    "CAPABILITIES), zero included",
    "SPC-5 6.16.1 and the ALLOCATION LENGTH field",
    "GOOD with the data truncated to ALLOCATION LENGTH (zero: no data)",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05h/24h/00h), every service action",
    _tests("test_conf_pr_in.py::test_read_keys_allocation_length_below_header"),
    measured_on=BOTH_KERNELS,
)
FULL_STATUS_TRUNCATION = Deviation(
    "read-full-status-truncated-length",
    "READ FULL STATUS with an ALLOCATION LENGTH shorter than the list",
    "SPC-5 6.16.5",
    "ADDITIONAL LENGTH describes the whole list; the data is cut at ALLOCATION LENGTH",
    "descriptors are added while the ADDITIONAL LENGTH so far plus the next descriptor's "
    "TransportID length fits in ALLOCATION LENGTH; ADDITIONAL LENGTH counts those only and the "
    "data ends after them (or at ALLOCATION LENGTH, the last one cut)",
    _tests("test_conf_pr_in.py::test_read_full_status_header_counts_whole_list"),
    measured_on=BOTH_KERNELS,
)
UA_CLEARS_ALL = Deviation(
    "ua-report-clears-all",
    "reporting a unit attention while more are queued for the I_T nexus",
    "SAM-5 5.14",
    "each report clears the one condition it reports",
    "the oldest queued condition is reported and every queued one is cleared (REQUEST SENSE too)",
    _tests("test_conf_conflicts.py::test_unit_attentions_reported_one_at_a_time"),
    measured_on=BOTH_KERNELS,
)
RELEASE_SKIPS_KEY_CHECK = Deviation(
    "release-by-non-holder-skips-key-check",
    "RELEASE with a wrong RESERVATION KEY from a registered I_T nexus that holds no reservation",
    "SPC-5 6.17.3",
    "RESERVATION CONFLICT",
    "GOOD, nothing changes (the key is compared only for the holder)",
    _tests(
        "test_conf_reserve.py::test_release_with_wrong_key_without_reservation_conflicts",
        "test_conf_reserve.py::test_release_by_non_holder_with_wrong_key_conflicts",
    ),
    measured_on=BOTH_KERNELS,
)
AR_PREEMPT_TAKES_OVER = Deviation(
    "all-registrants-preempt-by-key-takes-reservation",
    "PREEMPT under an all-registrants reservation with the SERVICE ACTION RESERVATION KEY of "
    "the registrant LIO files as its holder",
    "SPC-5 5.14.11 (preempting)",
    "remove the registrations with that key; the all-registrants reservation stays",
    "LIO files one registrant as the holder (the one that reserved; when it goes, the first "
    "remaining registrant): its key preempts like a holder's: those registrations go "
    "(REGISTRATIONS PREEMPTED), the issuer holds a reservation of the CDB's TYPE, and if the "
    "TYPE changed every other registrant gets RESERVATIONS RELEASED",
    _tests("test_conf_preempt.py::test_preempt_all_registrants_by_key_removes_registrations_only"),
    measured_on=BOTH_KERNELS,
)
PREEMPT_KEEPS_ISSUER = Deviation(
    "preempt-keeps-issuer-registration",
    "PREEMPT under an all-registrants reservation whose SERVICE ACTION RESERVATION KEY is the "
    "issuer's own key",
    "SPC-5 5.14.11 (preempting)",
    "every registration with that key is removed, the issuer's included",
    "the issuer keeps its registration (GOOD, PRGENERATION incremented even when nothing else "
    "had the key)",
    _tests("test_conf_preempt.py::test_preempt_all_registrants_by_own_key_removes_issuer"),
    measured_on=BOTH_KERNELS,
)
READ_CAPACITY_16_CONFLICT = Deviation(
    "read-capacity-16-conflicts-under-ea",
    "READ CAPACITY(16) from a non-holder under Exclusive Access, or from an unregistered I_T "
    "nexus under EA-RO or EA-AR",
    "SPC-5 5.14.1 (the command-conflict table)",
    "allowed",
    "RESERVATION CONFLICT (LIO classifies SERVICE ACTION IN(16) as a read)",
    _tests("test_conf_conflicts.py::test_non_holder_where_lio_deviates"),
    measured_on=BOTH_KERNELS,
)
READ_CAPACITY_10_CONFLICT = Deviation(
    "read-capacity-10-conflicts-under-ea",
    "READ CAPACITY(10) from a non-holder under Exclusive Access, or from an unregistered I_T "
    "nexus under EA-RO or EA-AR",
    "SPC-5 5.14.1 (the command-conflict table)",
    "allowed",
    "RESERVATION CONFLICT on 6.1 (LIO classifies it as a read); 6.12 allows it, as SPC-5 does",
    _tests("test_conf_conflicts.py::test_non_holder_where_lio_deviates"),
    note="measured on both kernels: 6.12 answers GOOD, so the lio-6.12 profile lacks this entry",
)
MODE_SENSE_ALLOWED = Deviation(
    "mode-sense-allowed-for-registrants-under-ea",
    "MODE SENSE(6) or (10) from a registered non-holder under Exclusive Access",
    "SPC-5 5.14.1 (the command-conflict table)",
    "RESERVATION CONFLICT",
    "GOOD (LIO lets registered I_T nexuses read device state under every type)",
    _tests("test_conf_conflicts.py::test_non_holder_where_lio_deviates"),
    measured_on=BOTH_KERNELS,
)
NO_DATA_BY_DIRECTION = Deviation(
    "no-data-commands-classified-by-direction",
    "commands without a data transfer (SYNCHRONIZE CACHE(10)/(16), VERIFY(10) without BYTCHK) "
    "from a non-holder under a Write Exclusive type",
    "SPC-5 5.14.1 (the command-conflict table)",
    "SYNCHRONIZE CACHE conflicts for an unregistered I_T nexus; VERIFY is allowed to a "
    "registered non-holder under Write Exclusive",
    "LIO decides by data direction: a command without data is allowed to an unregistered I_T "
    "nexus under WE, WE-RO and WE-AR, and conflicts for a registered non-holder under WE",
    _tests("test_conf_conflicts.py::test_non_holder_where_lio_deviates"),
    note="START STOP UNIT is classified the same way (measured under WE types; LIO then "
    "refuses START=1 with INVALID FIELD IN CDB, which the model does not reproduce). VERIFY "
    "with BYTCHK 01b carries data-out on LIO; not measured, the model files every VERIFY as "
    "without data.",
    measured_on=BOTH_KERNELS,
)
CRH_HOLDER_ONLY = Deviation(
    "crh-exempts-only-the-holder",
    "RESERVE(6) or RELEASE(6) from a registered I_T nexus other than the one LIO files as "
    "holder, under a registrants-only or all-registrants reservation",
    "SPC-5 5.14.3",
    "GOOD, nothing changes (a registrant under RO, every registrant under AR, is exempt)",
    "RESERVATION CONFLICT: only the holder (for all-registrants types, the registrant that "
    "reserved) is exempt",
    _tests(
        "test_conf_conflicts.py::test_reserve_6_by_registrant_under_registrants_types",
        "test_conf_decisions.py::"
        "test_registrant_under_registrants_only_reserve_6_is_good_and_changes_nothing",
    ),
    measured_on=BOTH_KERNELS,
)
READ_RESERVATION_CUT = Deviation(
    "read-reservation-short-allocation",
    "READ RESERVATION while a reservation is held, ALLOCATION LENGTH 8 to 21",
    "SPC-5 6.16.3 and the ALLOCATION LENGTH field",
    "the data truncated to ALLOCATION LENGTH: the RESERVATION KEY is there from 16 bytes on",
    "the header (PRGENERATION, ADDITIONAL LENGTH 16), then zeros up to ALLOCATION LENGTH: LIO "
    "fills in the descriptor only when 22 bytes or more were asked for",
    _tests("test_conf_pr_in.py::test_read_reservation_below_the_whole_descriptor"),
    note="found by the lockstep differential (docs/lockstep.md)",
    measured_on=BOTH_KERNELS,
)
TYPE_BEFORE_REGISTRATION = Deviation(
    "reserved-type-before-registration",
    "RESERVE, PREEMPT or PREEMPT AND ABORT with a reserved TYPE from an I_T nexus that is not "
    "registered, or registered with another key",
    "SPC-5 5.14.9 and 5.14.11",
    "RESERVATION CONFLICT: the key is checked first (SPC-5 does not order the two checks; the "
    "model's standard answer does)",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05h/24h/00h): the TYPE is checked "
    "before the issuer's registration, after one check of its own: while another I_T nexus "
    "holds a reservation, RESERVATION CONFLICT for anything but a REGISTER, a registered "
    "nexus's RELEASE, CLEAR or PREEMPT, or a registrant's command under a registrants-only type "
    "(so a non-holder's REGISTER AND MOVE with a bad parameter list conflicts too)",
    _tests(
        "test_conf_reserve.py::test_reserved_type_from_a_nexus_without_the_key",
        "test_conf_move.py::test_the_move_parameter_list_is_checked_before_the_reservation",
    ),
    note="found by the lockstep differential (docs/lockstep.md)",
    measured_on=BOTH_KERNELS,
)
NO_FIELD_POINTER = Deviation(
    "illegal-request-without-field-pointer",
    "any command ending in ILLEGAL REQUEST with INVALID FIELD IN CDB or INVALID FIELD IN "
    "PARAMETER LIST",
    "SPC-5 4.4.2.4 (sense-key specific data)",
    "a FIELD POINTER to the offending byte (SKSV=1): the model's standard answer (SPC-5 makes "
    "it optional)",
    "no sense-key specific data: bytes 15-17 of the fixed-format sense are zero",
    _tests("test_conf_reserve.py::test_a_reserved_type_is_pointed_at"),
    note="found by the lockstep differential (docs/lockstep.md)",
    measured_on=BOTH_KERNELS,
)
PREEMPT_AND_ABORT_STALLS = Deviation(
    "preempt-and-abort-never-completes",
    "PREEMPT AND ABORT that succeeds (tcm_loop fabric)",
    "SPC-5 5.14.11 (preempting and aborting)",
    "the preempt, the preempted I_T nexuses' tasks aborted, then GOOD",
    "the preempt takes effect but the command never completes, and later commands to the LUN "
    "may hang too; the model applies the preempt and withholds the answer (a command that "
    "never completes: the rig and the scenario engine report it as hung)",
    _tests(
        "test_conf_preempt.py::test_preempt_holder_takes_reservation[PREEMPT_AND_ABORT]",
        "test_conf_preempt.py::test_preempt_with_type_change_tells_survivors[PREEMPT_AND_ABORT]",
    ),
    note="docs/rig.md: the VM tier runs lio_hangs tests last, in its second VM (--run-lio-hangs); "
    "on 6.12 too (scripts/test --kernel 6.12)",
    measured_on=BOTH_KERNELS,
)

ALL_TG_PT_ISSUING_PORT_ONLY = Deviation(
    "all-tg-pt-registers-the-issuing-port-only",
    "REGISTER or REGISTER AND IGNORE EXISTING KEY with ALL_TG_PT set, from an unregistered I_T "
    "nexus (tcm_loop fabric)",
    "SPC-5 5.14.7",
    "the initiator port is registered with every target port of the LU: one registration per "
    "I_T nexus, each reported by READ KEYS and READ FULL STATUS",
    "only the I_T nexus the command came through is registered (LIO copies the registration "
    "only to target ports where an explicit LUN ACL of that initiator maps the LU, and "
    "tcm_loop's ACLs are generated); READ FULL STATUS reports it with ALL_TG_PT set and "
    "RELATIVE TARGET PORT IDENTIFIER 0",
    _tests("test_conf_ports.py::test_register_all_target_ports"),
    measured_on=BOTH_KERNELS,
)
ALL_TG_PT_KEPT = Deviation(
    "all-tg-pt-registration-needs-all-tg-pt",
    "REGISTER or REGISTER AND IGNORE EXISTING KEY with ALL_TG_PT clear from an I_T nexus "
    "registered with ALL_TG_PT set",
    "SPC-5 5.14.7",
    "the key is replaced, or with SERVICE ACTION RESERVATION KEY zero the registration "
    "removed: for a registered I_T nexus the REGISTER behaviours do not look at ALL_TG_PT",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05h/24h/00h), nothing changed "
    "(the key check and SPEC_I_PT's refusal come first); with ALL_TG_PT set the same command "
    "is GOOD",
    _tests("test_conf_ports.py::test_register_all_target_ports"),
    measured_on=BOTH_KERNELS,
    note="LIO's source checks this after the key and SPEC_I_PT; the SPC text read for this "
    "model ties no rule to a registered I_T nexus's ALL_TG_PT bit (the whole clause was not "
    "at hand: the standard's answer is the model's reading)",
)

SPEC_I_PT_WHERE_KNOWN = Deviation(
    "spec-i-pt-registers-where-the-initiator-is",
    "REGISTER with SPEC_I_PT naming another initiator port (tcm_loop fabric)",
    "SPC-5 5.14.7",
    "each TransportID is registered with the target port the command came through (with "
    "every target port under ALL_TG_PT), whether or not that initiator port has an I_T nexus "
    "there",
    "each TransportID is registered with the target ports where an I_T nexus of its initiator "
    "exists (LIO's ACLs; on tcm_loop the port of the loopback nexus with that name), not with "
    "the one the command came through; a TransportID whose initiator has none is INVALID "
    "FIELD IN PARAMETER LIST (05h/26h/00h), nothing registered",
    _tests("test_conf_ports.py::test_spec_i_pt_registers_the_named_initiator"),
    measured_on=BOTH_KERNELS,
)
MOVE_NEEDS_NEXUS = Deviation(
    "register-and-move-needs-an-existing-nexus",
    "REGISTER AND MOVE to an initiator port that has no I_T nexus with the target port its "
    "RELATIVE TARGET PORT IDENTIFIER names (tcm_loop fabric)",
    "SPC-5 5.14.8",
    "the reservation moves to that I_T nexus, registered with the SERVICE ACTION RESERVATION KEY",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (05h/26h/00h), nothing "
    "changed: LIO finds no ACL of that initiator on that target port",
    _tests("test_conf_ports.py::test_register_and_move_to_an_initiator_not_on_that_port"),
    measured_on=BOTH_KERNELS,
)

SPEC_I_PT_SKIPS_REGISTERED = Deviation(
    "spec-i-pt-skips-registered",
    "REGISTER with SPEC_I_PT naming an I_T nexus that is already registered",
    "SPC-5 5.14.7",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (05h/26h/00h), nothing "
    "registered",
    "that TransportID is skipped (the registration and its key stay as they were), the rest "
    "registered: GOOD",
    _tests("test_conf_ports.py::test_spec_i_pt_registers_the_named_initiator"),
    measured_on=BOTH_KERNELS,
    note="SPC-5's answer is the model's reading of the clause (the reference notes mark it "
    "unverified); found by the lockstep differential once it generated SPEC_I_PT",
)
GENERATION_PER_REGISTRATION = Deviation(
    "spec-i-pt-generation-per-registration",
    "REGISTER with SPEC_I_PT that registers more than one I_T nexus",
    "SPC-5 6.16.2",
    "PRGENERATION incremented once: it counts successful commands",
    "PRGENERATION incremented once per registration made (the issuer's and each TransportID's)",
    _tests("test_conf_ports.py::test_spec_i_pt_registers_the_named_initiator"),
    measured_on=BOTH_KERNELS,
    note="found by the lockstep differential once it generated SPEC_I_PT (6.12)",
)
SPEC_I_PT_REGISTERS_TWICE = Deviation(
    "spec-i-pt-registers-twice",
    "REGISTER with SPEC_I_PT whose TransportIDs name the issuer's own initiator port, or name "
    "one initiator port twice",
    "SPC-5 5.14.7",
    "one registration per I_T nexus (the model's reading: an I_T nexus named again is "
    "registered once)",
    "a second registration of that I_T nexus (one per mention): READ KEYS and READ FULL STATUS "
    "list it again, PRGENERATION counts it; a REGISTER changes and an unregister removes the "
    "first one only (the next then answers for that I_T nexus), a PREEMPT or CLEAR removes "
    "every registration with the key; a PREEMPT that removes the issuer's own second "
    "registration tells the issuer REGISTRATIONS PREEMPTED, and a CLEAR by an issuer that "
    "holds two tells it RESERVATIONS PREEMPTED (only its first is its own)",
    _tests(
        "test_conf_ports.py::test_spec_i_pt_naming_the_issuer_registers_it_twice",
        "test_conf_ports.py::test_spec_i_pt_naming_a_port_twice_registers_it_twice",
        "test_conf_ports.py::test_preempting_its_own_second_registration_tells_the_issuer",
        "test_conf_ports.py::test_clearing_with_its_own_second_registration_tells_the_issuer",
    ),
    measured_on=BOTH_KERNELS,
    note="LIO checks a TransportID against the registrations made before the command, not "
    "against the issuer's or the list's own; found by the lockstep differential",
)

REGISTRY: tuple[Deviation, ...] = (
    RELEASE_WRONG_TYPE,
    UNREGISTERED_NOT_READY,
    UNREGISTER_GENERATION,
    MOVE_LIST_BEFORE_HOLDER,
    MOVE_FILES_TYPE_AS_SCOPE,
    SCOPE_IN_PARAMETER_LIST,
    PREEMPT_CHECKS_TYPE_AND_SCOPE,
    ALLOCATION_LENGTH_MINIMUM,
    FULL_STATUS_TRUNCATION,
    UA_CLEARS_ALL,
    RELEASE_SKIPS_KEY_CHECK,
    AR_PREEMPT_TAKES_OVER,
    PREEMPT_KEEPS_ISSUER,
    READ_CAPACITY_10_CONFLICT,
    READ_CAPACITY_16_CONFLICT,
    MODE_SENSE_ALLOWED,
    NO_DATA_BY_DIRECTION,
    CRH_HOLDER_ONLY,
    TYPE_BEFORE_REGISTRATION,
    NO_FIELD_POINTER,
    READ_RESERVATION_CUT,
    PREEMPT_AND_ABORT_STALLS,
    ALL_TG_PT_ISSUING_PORT_ONLY,
    ALL_TG_PT_KEPT,
    SPEC_I_PT_WHERE_KNOWN,
    MOVE_NEEDS_NEXUS,
    SPEC_I_PT_SKIPS_REGISTERED,
    GENERATION_PER_REGISTRATION,
    SPEC_I_PT_REGISTERS_TWICE,
)
DEVIATIONS: dict[str, Deviation] = {d.name: d for d in REGISTRY}
