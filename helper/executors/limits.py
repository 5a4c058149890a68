"""What a helper backend's way to the device cannot carry, as data.

A guest behind ``--backend ioctl`` talks to the same LIO LU as one behind ``--backend sg``, but
the block layer's PR ioctls express less than SCSI: some commands cannot reach the device at
all and are answered by the helper, as a device without them would. Each such limit is one
named entry here: what cannot be carried, and the exact answer. The conformance suite asserts
that answer in the tests an entry lists, on backends whose path has it (``path_limit`` marks,
``tests/conformance/conftest.py``), and docs/helper.md says the same in prose.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.helper.executors.status import INVALID_FIELD, INVALID_PARAM, IO_ERROR, SenseCode

CONF = "tests/conformance/"


@dataclass(frozen=True)
class PathLimit:
    """One thing a helper backend's path cannot carry."""

    #: stable identifier: the conformance marks name it
    name: str
    #: the helper ``--backend`` whose path has it
    backend: str
    title: str
    #: the answer the guest gets instead, in words
    answer: str
    #: where the helper answers CHECK CONDITION itself: the sense it builds
    sense: SenseCode | None
    tests: tuple[str, ...]

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
        "test_conf_pr_out.py::test_register_and_move",
        "test_conf_pr_out.py::test_register_and_move_by_non_holder_conflicts",
        "test_conf_pr_out.py::test_register_and_move_all_registrants_conflicts",
        "test_conf_pr_out.py::test_register_and_move_without_reservation_conflicts",
        "test_conf_pr_out.py::test_unregistered_register_and_move_conflicts",
        "test_conf_pr_out.py::test_the_move_parameter_list_is_checked_before_the_reservation",
        "test_conf_pr_out.py::test_register_and_move_invalid_parameters",
        "test_conf_pr_out.py::test_a_reservation_moved_back_to_its_issuer",
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
        "test_conf_pr_out.py::test_spec_i_pt_only_with_register",
        "test_conf_pr_out.py::test_spec_i_pt_from_registered_nexus_is_invalid",
    ),
)
IOCTL_FIELDS_CHECKED_FIRST = PathLimit(
    "ioctl-scope-and-type-checked-first",
    "ioctl",
    "SCOPE and TYPE: the ioctls carry no SCOPE and only the six types, so the helper checks "
    "both before the device sees the command",
    "CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (05/24/00) for a SCOPE other than "
    "LU_SCOPE or a TYPE that does not exist, whatever the device would have checked first",
    INVALID_FIELD,
    _tests(
        "test_conf_pr_out.py::test_reserve_with_reserved_scope",
        "test_conf_pr_out.py::test_reserved_type_from_a_nexus_without_the_key",
    ),
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
        "test_conf_pr_out.py::test_unregistered_reserve_conflicts",
        "test_conf_pr_out.py::test_unregistered_release_conflicts",
        "test_conf_pr_out.py::test_unregistered_clear_conflicts",
        "test_conf_pr_out.py::test_preempt_zero_key_without_all_registrants",
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

LIMITS: dict[str, PathLimit] = {
    limit.name: limit
    for limit in (
        IOCTL_NO_READ_FULL_STATUS,
        IOCTL_NO_REGISTER_AND_MOVE,
        IOCTL_NO_SPEC_I_PT_ALL_TG_PT,
        IOCTL_FIELDS_CHECKED_FIRST,
        IOCTL_SENSE_LOST,
        IOCTL_UNIT_ATTENTION_LOST,
        IOCTL_CAPABILITIES_OF_THE_PATH,
        IOCTL_REGISTER_ALWAYS_APTPL,
    )
}


def of_backend(backend: str) -> frozenset[str]:
    """The limits of helper ``--backend`` ``backend``'s path (by name)."""
    return frozenset(name for name, limit in LIMITS.items() if limit.backend == backend)
