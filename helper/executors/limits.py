"""What a helper backend's way to the device cannot carry, as data.

A guest behind ``--backend ioctl`` talks to the same LIO LU as one behind ``--backend sg``, but
the block layer's PR ioctls express less than SCSI: some commands cannot reach the device at
all and are answered by the helper, as a device without them would. A guest on a dm-multipath
map (``--backend sg``, the multipath executor) is one host with an I_T nexus per path, and
libmpathpersist stands between it and the device. Each such limit is one named entry here:
what cannot be carried, and the exact answer. The conformance suite asserts
that answer in the tests an entry lists, on backends whose path has it (``path_limit`` marks,
``tests/conformance/conftest.py``), and docs/helper.md says the same in prose.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_PARAM,
    IO_ERROR,
    LUN_COMM_FAILURE,
    NOT_READY,
    SenseCode,
)
from scsi_pr.sim.profiles import kernel_version

CONF = "tests/conformance/"


@dataclass(frozen=True)
class PathLimit:
    """One thing a helper backend's path cannot carry."""

    #: stable identifier: the conformance marks name it
    name: str
    #: the way to the device that has it: a helper ``--backend`` (``ioctl``), or ``multipath``
    #: (``--backend sg`` on a dm-multipath map)
    backend: str
    title: str
    #: the answer the guest gets instead, in words
    answer: str
    #: where the helper answers CHECK CONDITION itself: the sense it builds
    sense: SenseCode | None
    tests: tuple[str, ...]
    #: the first kernel series (major, minor) the limit applies on, where that depends on the
    #: kernel (None: every kernel)
    since: tuple[int, int] | None = None

    @property
    def refusal(self) -> SenseCode:
        """The sense of the helper's own answer (a limit it answers without the device)."""
        if self.sense is None:
            raise ValueError(f"{self.name}: the device answers, not the helper")
        return self.sense


def _tests(*names: str) -> tuple[str, ...]:
    return tuple(CONF + n for n in names)


IOCTL_NO_READ_FULL_STATUS = PathLimit(
    "ioctl-no-read-full-status",
    "ioctl",
    "READ FULL STATUS: no block-layer ioctl reads it",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05/24/00)",
    INVALID_FIELD,
    _tests(
        "test_conf_pr_in.py::test_read_full_status_names_each_nexus",
        "test_conf_pr_in.py::test_read_full_status_header_counts_whole_list",
        "test_conf_machine.py::test_pr_machine",
    ),
)
IOCTL_NO_REGISTER_AND_MOVE = PathLimit(
    "ioctl-no-register-and-move",
    "ioctl",
    "REGISTER AND MOVE: no block-layer ioctl carries it",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05/24/00), before the device",
    INVALID_FIELD,
    _tests(
        "test_conf_machine.py::test_pr_machine",
        "test_conf_move.py::test_register_and_move",
        "test_conf_move.py::test_register_and_move_by_non_holder_conflicts",
        "test_conf_move.py::test_register_and_move_all_registrants_conflicts",
        "test_conf_move.py::test_register_and_move_without_reservation_is_an_invalid_field",
        "test_conf_move.py::test_unregistered_register_and_move_conflicts",
        "test_conf_move.py::test_the_move_parameter_list_is_checked_before_the_reservation",
        "test_conf_move.py::test_register_and_move_invalid_parameters",
        "test_conf_move.py::test_a_reservation_moved_back_to_its_issuer",
        "test_conf_ports.py::test_register_and_move_to_its_initiator_port_through_another_target_port",
        "test_conf_ports.py::test_register_and_move_to_an_initiator_not_on_that_port",
    ),
)
IOCTL_NO_SPEC_I_PT_ALL_TG_PT = PathLimit(
    "ioctl-no-spec-i-pt-all-tg-pt",
    "ioctl",
    "SPEC_I_PT and ALL_TG_PT: IOC_PR_REGISTER has no field for either",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (05/26/00), before the "
    "device; where SPC-5 refuses the field anyway the answers agree",
    INVALID_PARAM,
    _tests(
        "test_conf_register.py::test_spec_i_pt_only_with_register",
        "test_conf_register.py::test_spec_i_pt_from_registered_nexus_is_invalid",
        "test_conf_ports.py::test_register_all_target_ports",
        "test_conf_ports.py::test_spec_i_pt_registers_the_named_initiator",
        "test_conf_ports.py::test_spec_i_pt_naming_the_issuer_registers_it_twice",
        "test_conf_ports.py::test_spec_i_pt_naming_a_port_twice_registers_it_twice",
        "test_conf_ports.py::test_preempting_its_own_second_registration_tells_the_issuer",
        "test_conf_ports.py::test_clearing_with_its_own_second_registration_tells_the_issuer",
    ),
)
IOCTL_FIELDS_CHECKED_FIRST = PathLimit(
    "ioctl-scope-and-type-checked-first",
    "ioctl",
    "SCOPE and TYPE: the ioctls carry no SCOPE and only the six types, so the helper checks "
    "both before the device sees the command",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05/24/00) for a SCOPE other than "
    "LU_SCOPE or a TYPE that does not exist, whatever the device would have checked first (even "
    "for a PREEMPT that only removes registrations, where SPC-5 ignores both)",
    INVALID_FIELD,
    _tests(
        "test_conf_reserve.py::test_reserve_with_reserved_scope",
        "test_conf_reserve.py::test_reserved_type_from_a_nexus_without_the_key",
        "test_conf_preempt.py::test_preempt_removing_registrations_ignores_type_and_scope",
    ),
)
IOCTL_ILLEGAL_REQUEST_AS_EINVAL = PathLimit(
    "ioctl-illegal-request-as-einval",
    "ioctl",
    "An ILLEGAL REQUEST with INVALID FIELD IN CDB or IN PARAMETER LIST: sd turns both into "
    "EINVAL (6.12 measured; 6.1 returns the status, ioctl-sense-lost)",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05/24/00), the helper's answer to "
    "EINVAL, whichever of the two the device gave",
    INVALID_FIELD,
    _tests(
        "test_conf_machine.py::test_pr_machine",
        "test_conf_preempt.py::test_preempt_zero_key_without_all_registrants",
    ),
    # sd's PR error conversion came between the two kernels measured (6.1 lacks it)
    since=(6, 12),
)
IOCTL_SENSE_LOST = PathLimit(
    "ioctl-sense-lost",
    "ioctl",
    "The sense of a PR OUT's CHECK CONDITION: the ioctl returns the status byte only",
    "CHECK CONDITION, ABORTED COMMAND, I/O PROCESS TERMINATED (0B/00/06), as the C helper "
    "answers a CHECK CONDITION without sense; a condition still pending (TEST UNIT READY) is "
    "answered instead",
    IO_ERROR,
    _tests(
        "test_conf_machine.py::test_pr_machine",
        "test_conf_reserve.py::test_unregistered_reserve_conflicts",
        "test_conf_reserve.py::test_unregistered_release_conflicts",
        "test_conf_reserve.py::test_unregistered_clear_conflicts",
        "test_conf_preempt.py::test_preempt_zero_key_without_all_registrants",
    ),
)
IOCTL_UNIT_ATTENTION_LOST = PathLimit(
    "ioctl-unit-attention-lost",
    "ioctl",
    "A unit attention that a PR OUT reports: 6.1's sd takes it with the command's sense",
    "the PR OUT's own answer: the helper, finding no condition pending, sends the command once "
    "more (a refused PR OUT changed nothing); the guest never sees the unit attention",
    None,
    _tests(
        "test_conf_machine.py::test_pr_machine",
        "test_conf_conflicts.py::test_pr_out_reports_pending_unit_attention",
    ),
)
IOCTL_CAPABILITIES_OF_THE_PATH = PathLimit(
    "ioctl-capabilities-of-the-path",
    "ioctl",
    "REPORT CAPABILITIES: what the path cannot carry is not offered",
    "the device's answer (by SG_IO) with SIP_C, ATP_C and RLR_C cleared; where SG_IO is not "
    "permitted, synthesised: PTPL_C, TMV and the six types",
    None,
    _tests("test_conf_pr_in.py::test_report_capabilities"),
)
IOCTL_REGISTER_ALWAYS_APTPL = PathLimit(
    "ioctl-register-always-aptpl",
    "ioctl",
    "APTPL: sd sends every REGISTER with APTPL=1, whatever the guest asked",
    "GOOD, and the device's APTPL (PTPL_A) is set by every REGISTER",
    None,
    _tests("test_conf_pr_in.py::test_report_capabilities_ptpl_a_follows_aptpl"),
)


# -- dm-multipath: one host, an I_T nexus per path, libmpathpersist in between ----------------
MPATH_REGISTRATION_PER_PATH = PathLimit(
    "mpath-one-registration-per-path",
    "multipath",
    "A REGISTER through the map is sent down every path: the device holds one registration "
    "per path (I_T nexus)",
    "GOOD; READ KEYS lists the key once per path, PRGENERATION advances once per path, READ "
    "FULL STATUS has a descriptor per path, and a PREEMPT or CLEAR of the key removes them all "
    "(the PR machine, whose oracle has one I_T nexus per initiator, drives the host's first "
    "path directly)",
    None,
    _tests(
        "test_conf_pr_in.py::test_read_keys_lists_every_registration",
        "test_conf_ports.py::test_register_all_target_ports",
        "test_conf_pr_in.py::test_read_keys_truncated_keeps_full_additional_length",
        "test_conf_pr_in.py::test_read_full_status_names_each_nexus",
        "test_conf_register.py::test_register_then_change_key",
        "test_conf_register.py::test_register_with_wrong_key_conflicts",
        "test_conf_register.py::test_register_and_ignore_existing_key",
        "test_conf_reserve.py::test_reserved_type_from_a_nexus_without_the_key",
        "test_conf_reserve.py::test_release_with_wrong_key_without_reservation_conflicts",
        "test_conf_reserve.py::test_clear_with_wrong_key_conflicts",
        "test_conf_preempt.py::test_preempt_non_holder_removes_registration_only",
        "test_conf_preempt.py::test_preempt_removes_every_registration_with_the_key",
        "test_conf_preempt.py::test_preempt_all_registrants_by_own_key_removes_issuer",
        "test_conf_preempt.py::test_preempt_by_own_key_removes_issuer",
        "test_conf_preempt.py::test_preempt_removing_registrations_ignores_type_and_scope",
        "test_conf_move.py::test_register_and_move",
        "test_conf_move.py::test_register_and_move_without_reservation_is_an_invalid_field",
        "test_conf_move.py::test_the_move_parameter_list_is_checked_before_the_reservation",
        "test_conf_machine.py::test_pr_machine",
    ),
)
MPATH_IO_BY_ONE_PATH = PathLimit(
    "mpath-io-by-one-path",
    "multipath",
    "Commands other than PR leave the host by one path, and a WRITE EXCLUSIVE or EXCLUSIVE "
    "ACCESS reservation is held by the one path libmpathpersist reserved through",
    "where the reservation's holder is another path of the same host: the answer a registered "
    "non-holder gets (RESERVATION CONFLICT for the commands the type forbids, RESERVE(6) and "
    "RELEASE(6) included)",
    None,
    _tests(
        "test_conf_conflicts.py::test_holder_is_never_in_conflict",
        "test_conf_conflicts.py::test_reserve_6_by_registrant_under_registrants_types",
        "test_conf_conflicts.py::test_reserve_6_by_pr_holder_is_a_no_op",
    ),
)
MPATH_UNIT_ATTENTION_OF_EVERY_PATH = PathLimit(
    "mpath-unit-attention-of-every-path",
    "multipath",
    "A unit attention is established for each path's I_T nexus, and the host's commands take "
    "whichever path: one established for another path reaches the host",
    "CHECK CONDITION, UNIT ATTENTION where a single-path initiator that issued the command "
    "would have none (the PR OUT's issuing path was told nothing; its other path was). After "
    "a RELEASE, which libmpathpersist sends down every path at once, the other path may have "
    "taken it with its own RELEASE: whether it is still pending depends on their order",
    None,
    _tests(
        "test_conf_conflicts.py::test_unit_attention_is_per_i_t_nexus",
        "test_conf_decisions.py::test_the_same_unit_attention_is_not_queued_twice",
        "test_conf_reserve.py::test_release_by_holder",
    ),
)
MPATH_KEY_CHECKED_BY_LIBRARY = PathLimit(
    "mpath-key-checked-by-the-library",
    "multipath",
    "A PR OUT whose RESERVATION KEY and SERVICE ACTION RESERVATION KEY both differ from the "
    "key multipathd holds for the map (reservation_key file) never reaches a path",
    "CHECK CONDITION, ABORTED COMMAND, LOGICAL UNIT COMMUNICATION FAILURE (0B/08/00): "
    "libmpathpersist's MPATH_PR_SYNTAX_ERROR, answered as the C helper answers it",
    LUN_COMM_FAILURE,
    _tests(
        "test_conf_register.py::test_register_with_wrong_key_conflicts",
        "test_conf_reserve.py::test_reserve_with_wrong_key_conflicts",
        "test_conf_reserve.py::test_reserved_type_from_a_nexus_without_the_key",
        "test_conf_reserve.py::test_release_with_wrong_key_conflicts",
        "test_conf_reserve.py::test_release_with_wrong_key_without_reservation_conflicts",
        "test_conf_reserve.py::test_clear_with_wrong_key_conflicts",
    ),
)
MPATH_NOT_READY_REBUILT = PathLimit(
    "mpath-not-ready-rebuilt",
    "multipath",
    "The sense of a NOT READY answer: libmpathpersist keeps only the sense key",
    "CHECK CONDITION, NOT READY, LOGICAL UNIT NOT READY (02/04/00), the C helper's rebuilt "
    "sense, where TEST UNIT READY finds nothing pending (LIO's 02/08/00 for an unregistered "
    "RESERVE or CLEAR is lost)",
    NOT_READY,
    _tests(
        "test_conf_reserve.py::test_unregistered_reserve_conflicts",
        "test_conf_reserve.py::test_unregistered_clear_conflicts",
    ),
)
MPATH_ILLEGAL_REQUEST_GUESSED = PathLimit(
    "mpath-illegal-request-guessed",
    "multipath",
    "The sense of an ILLEGAL REQUEST answer: libmpathpersist keeps only the sense key",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (05/26/00), the C "
    "helper's guess, whatever the device's additional sense code (05/24/00 for a reserved "
    "TYPE) and with no field pointer",
    INVALID_PARAM,
    _tests(
        "test_conf_reserve.py::test_reserve_with_reserved_type",
        "test_conf_reserve.py::test_a_reserved_type_is_pointed_at",
        "test_conf_preempt.py::test_preempt_removing_registrations_ignores_type_and_scope",
        "test_conf_ports.py::test_register_all_target_ports",
    ),
)
MPATH_RELEASE_BY_THE_LIBRARY = PathLimit(
    "mpath-release-by-the-library",
    "multipath",
    "RELEASE: libmpathpersist sends it down every path and answers for them together; a "
    "reservation of the host's key still there afterwards it takes over (PREEMPT by its own "
    "key) and releases",
    "GOOD where the device refuses the issuing path (an unregistered host; a TYPE other than "
    "the reservation's, or a reservation LIO filed under another scope: released all the same, "
    "the other registrants told RESERVATIONS PREEMPTED)",
    None,
    _tests(
        "test_conf_reserve.py::test_release_with_wrong_type",
        "test_conf_reserve.py::test_unregistered_release_conflicts",
        "test_conf_move.py::test_a_reservation_moved_back_to_its_issuer",
    ),
)
MPATH_PARAMETER_LIST_REBUILT = PathLimit(
    "mpath-parameter-list-rebuilt",
    "multipath",
    "The PR OUT parameter list: libmpathpersist builds its own from the fields it knows",
    "GOOD for a 28-byte list with no TransportIDs (sent as 24 bytes); SPEC_I_PT from a "
    "registered host: GOOD, or INVALID FIELD IN PARAMETER LIST from the first path, by a race "
    "in the library (its per-path threads share one list, whose SPEC_I_PT it clears for the "
    "second path while the first path's thread may not have read it yet)",
    None,
    _tests(
        "test_conf_register.py::test_parameter_list_length_must_be_24",
        "test_conf_register.py::test_spec_i_pt_from_registered_nexus_is_invalid",
    ),
)
MPATH_MOVE_FROM_THE_HOLDING_PATH = PathLimit(
    "mpath-move-from-the-holding-path",
    "multipath",
    "REGISTER AND MOVE goes down the host's paths until one is not answered RESERVATION "
    "CONFLICT; the host's own TransportID names its first path only",
    'a move "to itself" sent by another path is a move to another I_T nexus: GOOD, the '
    "reservation now held by the path the TransportID names, its key the SERVICE ACTION "
    "RESERVATION KEY; with no reservation to move, LIO's answer to such a move",
    None,
    _tests(
        "test_conf_move.py::test_register_and_move_invalid_parameters",
        "test_conf_move.py::test_the_move_parameter_list_is_checked_before_the_reservation",
        "test_conf_move.py::test_a_reservation_moved_back_to_its_issuer",
    ),
)
MPATH_PR_IN_READ_WHOLE = PathLimit(
    "mpath-pr-in-read-whole",
    "multipath",
    "PR IN: libmpathpersist reads with its own ALLOCATION LENGTH, the helper cuts the answer "
    "to the guest's",
    "GOOD with the parameter data cut to the ALLOCATION LENGTH, as SPC-5 has it, where LIO "
    "refuses an allocation length below the header or zero-fills a cut reservation descriptor",
    None,
    _tests(
        "test_conf_pr_in.py::test_read_keys_allocation_length_below_header",
        "test_conf_pr_in.py::test_read_reservation_below_the_whole_descriptor",
        "test_conf_pr_in.py::test_read_full_status_header_counts_whole_list",
    ),
)

LIMITS: dict[str, PathLimit] = {
    limit.name: limit
    for limit in (
        IOCTL_NO_READ_FULL_STATUS,
        IOCTL_NO_REGISTER_AND_MOVE,
        IOCTL_NO_SPEC_I_PT_ALL_TG_PT,
        IOCTL_FIELDS_CHECKED_FIRST,
        IOCTL_SENSE_LOST,
        IOCTL_ILLEGAL_REQUEST_AS_EINVAL,
        IOCTL_UNIT_ATTENTION_LOST,
        IOCTL_CAPABILITIES_OF_THE_PATH,
        IOCTL_REGISTER_ALWAYS_APTPL,
        MPATH_REGISTRATION_PER_PATH,
        MPATH_IO_BY_ONE_PATH,
        MPATH_UNIT_ATTENTION_OF_EVERY_PATH,
        MPATH_KEY_CHECKED_BY_LIBRARY,
        MPATH_NOT_READY_REBUILT,
        MPATH_ILLEGAL_REQUEST_GUESSED,
        MPATH_RELEASE_BY_THE_LIBRARY,
        MPATH_PARAMETER_LIST_REBUILT,
        MPATH_MOVE_FROM_THE_HOLDING_PATH,
        MPATH_PR_IN_READ_WHOLE,
    )
}


def of_backend(backend: str, release: str | None = None) -> frozenset[str]:
    """The limits of the way ``backend`` to the device (by name) on the kernel ``release``
    (``platform.release()``; None: only the limits every kernel has)."""
    series = None if release is None else kernel_version(release)
    return frozenset(
        name
        for name, limit in LIMITS.items()
        if limit.backend == backend
        and (limit.since is None or (series is not None and series >= limit.since))
    )
