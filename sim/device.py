"""LogicalUnit: one SCSI logical unit with persistent reservations, as a pure state machine.

``execute(nexus, cdb, data)`` runs one command the way SAM-5 orders the checks a device server
makes before a command runs (SAM-5 5.3/5.14, SPC-5 5.14.1):

1. the fault hook (a test's way to make the LU fail or stall);
2. the CDB must name a supported operation code and be long enough;
3. a pending unit attention is reported, except to INQUIRY, REPORT LUNS and REQUEST SENSE;
4. an SPC-2 reservation (RESERVE(6/10)) held by another I_T nexus conflicts;
5. the persistent reservation's conflict table;
6. the command itself.

Events that are not commands (power loss/on, resets, I_T nexus loss, losing PR information)
are methods with the PR and unit-attention effects SPC-5 and SAM-5 give them.

The LU's ``profile`` (``scsi_pr.sim.profiles``: ``spc5`` by default, or LIO as measured on a
kernel) names the deviations from SPC-5 it reproduces; the decision points consult it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from scsi_pr.sim import pr_in, pr_out, pr_out_data, profiles
from scsi_pr.sim.commands import COMMANDS, access_table, cdb_length, start_stop_access
from scsi_pr.sim.conflict import Access, allowed
from scsi_pr.sim.constants import (
    BUS_DEVICE_RESET_FUNCTION_OCCURRED,
    I_T_NEXUS_LOSS_OCCURRED,
    INTERNAL_TARGET_FAILURE,
    INVALID_COMMAND_OPERATION_CODE,
    INVALID_FIELD_IN_CDB,
    LOGICAL_UNIT_NOT_SUPPORTED,
    LUN_NOT_READY_CAUSE_NOT_REPORTABLE,
    PARAMETER_LIST_LENGTH_ERROR,
    PERSISTENT_RESERVATION_INFORMATION_LOST,
    POWER_ON_OCCURRED,
    POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
    Opcode,
    SenseKey,
    Status,
)
from scsi_pr.sim.deviations import ALL_TG_PT_ISSUING_PORT_ONLY, NO_FIELD_POINTER, UA_CLEARS_ALL
from scsi_pr.sim.errors import SimError
from scsi_pr.sim.faults import Fail, FaultHook, Stall
from scsi_pr.sim.medium import Medium, SparseMedium
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.profiles import Profile, ProfileMismatch
from scsi_pr.sim.result import (
    NEVER,
    CommandResult,
    CommandTerminated,
    illegal_request,
    without_field_pointer,
)
from scsi_pr.sim.state import (
    PersistentReservations,
    StateFormatError,
    bool_field,
    nexus_from_dict,
    nexus_to_dict,
    reading_state,
    str_field,
)
from scsi_pr.sim.store import AptplStore
from scsi_pr.sim.unit_attention import UnitAttentions

# Module-level aliases of enum members read for every command: an enum attribute lookup costs
# several times a global one.
_PR_IN, _PR_OUT = Opcode.PERSISTENT_RESERVE_IN, Opcode.PERSISTENT_RESERVE_OUT
_GOOD = Status.GOOD
_UNIT_ATTENTION = SenseKey.UNIT_ATTENTION
_REPLACE_LOST_RESERVATION = pr_out.SA.REPLACE_LOST_RESERVATION
_PARAMETER_LIST_LENGTH = struct.Struct(">I")  # SPC-5 6.17.1, CDB bytes 5..8
#: every successful command without data-in answers this (a frozen value, shared)
_GOOD_NO_DATA = CommandResult(_GOOD)

#: Commands that neither report nor clear a unit attention (SAM-5 5.14).
UA_EXEMPT = frozenset({Opcode.INQUIRY, Opcode.REPORT_LUNS, Opcode.REQUEST_SENSE})
#: Commands another I_T nexus may still send while an SPC-2 reservation is held (SPC-2 5.5.1).
SPC2_ALLOWED = frozenset(
    {Opcode.INQUIRY, Opcode.REPORT_LUNS, Opcode.REQUEST_SENSE, Opcode.RELEASE_6, Opcode.RELEASE_10}
)


def _never(cdb: bytes) -> bool:
    return False


#: Commands an LU with a recoverable lost persistent reservation still runs (SPC-5 5.14.5):
#: those allowed while nonvolatile memory is not ready (the model has INQUIRY, REPORT LUNS,
#: REQUEST SENSE and START STOP UNIT that starts), and REPLACE LOST RESERVATION; opcode ->
#: whether this CDB of it runs.
PR_LOST_ALLOWED: dict[int, Callable[[bytes], bool]] = {
    Opcode.INQUIRY: lambda cdb: True,
    Opcode.REPORT_LUNS: lambda cdb: True,
    Opcode.REQUEST_SENSE: lambda cdb: True,
    Opcode.START_STOP_UNIT: lambda cdb: start_stop_access(cdb) is Access.ALWAYS,
    Opcode.PERSISTENT_RESERVE_OUT: lambda cdb: cdb[1] & 0x1F == _REPLACE_LOST_RESERVATION,
}


def _nexus_order(d: dict[str, Any]) -> tuple[Any, ...]:
    """A snapshot lists the I_T nexuses in one order, so equal states compare equal."""
    return (d["protocol"], d["name"], d["isid"] or "", d["target_port"])


class LogicalUnitConfigError(SimError, ValueError):
    """A LogicalUnit was asked to be something SCSI does not allow (no or out-of-range target
    ports, no blocks)."""


class LogicalUnit:
    def __init__(
        self,
        *,
        blocks: int = 65536,
        block_size: int = 512,
        target_ports: Sequence[int] = (1, 2),
        serial: str = "SCSIPR0000000001",
        vendor: str = "SCSI-PR",
        product: str = "SIMULATED LU",
        revision: str = "0001",
        store: AptplStore | None = None,
        max_registrations: int = 64,
        fault: FaultHook | None = None,
        medium: Medium | None = None,
        replace_lost_reservation: bool | None = None,
        profile: Profile | str = profiles.DEFAULT_PROFILE,
    ) -> None:
        """``profile``: a ``Profile`` or its name (UnknownProfile otherwise);
        ``replace_lost_reservation`` (RLR_C) defaults to the profile's."""
        if not target_ports or any(not 0 < p < 0x10000 for p in target_ports):
            raise LogicalUnitConfigError(
                "target ports are RELATIVE TARGET PORT IDENTIFIERs 1..65535"
            )
        if blocks <= 0 or block_size <= 0:
            raise LogicalUnitConfigError("blocks and block_size must be positive")
        self.profile = profiles.get(profile)
        #: each accepted opcode's class in the conflict table, as this profile files it
        self.access = access_table(self.profile)
        if replace_lost_reservation is None:
            replace_lost_reservation = self.profile.replace_lost_reservation
        self.blocks, self.block_size = blocks, block_size
        self.target_ports = tuple(target_ports)
        self.serial, self.vendor, self.product, self.revision = serial, vendor, product, revision
        #: NAA 6 (IEEE registered extended) name derived from the serial: stable per LU
        self.naa = (0x6 << 60) | int.from_bytes(hashlib.sha1(serial.encode()).digest()[:8]) >> 4
        self.store = store
        self.max_registrations = max_registrations
        self.fault = fault
        self.medium: Medium = medium or SparseMedium(block_size)
        self.capabilities = pr_in.Capabilities(
            replace_lost_reservation,
            all_tg_pt_port_zero=ALL_TG_PT_ISSUING_PORT_ONLY in self.profile,
        )
        self.pr = PersistentReservations()
        self.ua = UnitAttentions()
        #: the I_T nexuses that exist (attached, or seen in a command): where LIO's profiles
        #: find an initiator for SPEC_I_PT and REGISTER AND MOVE (LIO's ACLs)
        self.nexuses: set[ITNexus] = set()
        self.spc2_holder: ITNexus | None = None
        self.powered = True
        self.reservation_lost = False
        #: I_T nexuses whose tasks the last PREEMPT AND ABORT aborted (for observers)
        self.last_aborted: list[ITNexus] = []
        # Deviations consulted for every command, decided once: an LU's profile is fixed.
        self._ua_clears_all = self.profile.choose(UA_CLEARS_ALL, False, True)
        self._no_field_pointer = self.profile.choose(NO_FIELD_POINTER, False, True)
        self._never_completing = pr_out.never_completing(self.profile)
        if store is not None:
            self._load_aptpl()

    # -- commands ---------------------------------------------------------------------------
    def execute(self, nexus: ITNexus, cdb: bytes, data: bytes = b"") -> CommandResult:
        """Run one command; never raises for any input."""
        stall = 0.0
        if self.fault is not None:
            fault = self.fault(nexus, cdb)
            if isinstance(fault, Fail):
                return fault.result
            if isinstance(fault, Stall):
                stall = fault.seconds
        try:
            # A CDB is only read, by index and slice, so any bytes-like one will do. The
            # data-out is sliced and kept (WRITE) and padded with bytes' methods: a
            # memoryview's slices would alias the caller's reusable buffer.
            if type(data) is not bytes:
                data = bytes(data)
            data_in = self._execute(nexus, cdb, data)
            result = CommandResult(_GOOD, b"", data_in) if data_in else _GOOD_NO_DATA
        except CommandTerminated as e:
            result = e.result
        except Exception:  # a model bug must still look like a SCSI answer
            result = CommandResult.check_condition(SenseKey.HARDWARE_ERROR, INTERNAL_TARGET_FAILURE)
        if result.sense and self._no_field_pointer:
            result = without_field_pointer(result)
        if (
            result is _GOOD_NO_DATA
            and cdb[0] == _PR_OUT
            and cdb[1] & 0x1F in self._never_completing
        ):
            result = replace(result, stall=NEVER)  # it took effect; the answer never comes
        elif stall:
            result = CommandResult(result.status, result.sense, result.data, stall)
        return result

    def _execute(self, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
        if not cdb:
            raise illegal_request(INVALID_COMMAND_OPERATION_CODE)
        opcode = cdb[0]
        is_pr = opcode in (_PR_IN, _PR_OUT)
        spec = None if is_pr else COMMANDS.get(opcode)
        if spec is None and not is_pr:
            raise illegal_request(INVALID_COMMAND_OPERATION_CODE, cdb_byte=0)
        if len(cdb) < cdb_length(opcode):
            raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=len(cdb))
        if not self.powered:
            raise CommandTerminated(
                CommandResult.check_condition(
                    SenseKey.NOT_READY, LUN_NOT_READY_CAUSE_NOT_REPORTABLE
                )
            )
        if nexus.target_port not in self.target_ports:
            raise illegal_request(LOGICAL_UNIT_NOT_SUPPORTED)
        self.nexuses.add(nexus)
        if opcode not in UA_EXEMPT and self.ua.pending(nexus):
            code = self.ua.pop(nexus, self._ua_clears_all)
            assert code is not None
            raise CommandTerminated(CommandResult.check_condition(_UNIT_ATTENTION, code))
        if self.spc2_holder is not None and (
            is_pr or (self.spc2_holder != nexus and opcode not in SPC2_ALLOWED)
        ):
            raise CommandTerminated(CommandResult.reservation_conflict())
        if self.reservation_lost and not PR_LOST_ALLOWED.get(opcode, _never)(cdb):
            raise CommandTerminated(
                CommandResult.check_condition(
                    SenseKey.DATA_PROTECT, PERSISTENT_RESERVATION_INFORMATION_LOST
                )
            )
        if opcode == _PR_OUT:
            self._persistent_reserve_out(nexus, cdb, data)
            return b""
        if opcode == _PR_IN:
            return pr_in.persistent_reserve_in(cdb, self.pr, self.capabilities, self.profile)
        assert spec is not None
        res = self.pr.reservation
        access = self.access[opcode]
        if spec.access_of is not None and access is spec.access:
            access = spec.access_of(cdb)
        if (
            res is not None
            and access is not Access.OWN_RULES
            and not self.pr.is_holder(nexus)
            and not allowed(access, res.type, nexus in self.pr.registrations)
        ):
            raise CommandTerminated(CommandResult.reservation_conflict())
        return spec.handler(self, nexus, cdb, data)

    def _persistent_reserve_out(self, nexus: ITNexus, cdb: bytes, data: bytes) -> None:
        action, rule = pr_out.rule_for(cdb)
        (length,) = _PARAMETER_LIST_LENGTH.unpack_from(cdb, pr_out_data.CDB_PARAMETER_LIST_LENGTH)
        if len(data) < length:
            raise illegal_request(
                PARAMETER_LIST_LENGTH_ERROR, cdb_byte=pr_out_data.CDB_PARAMETER_LIST_LENGTH
            )
        params = rule.parse(data[:length], action)
        aptpl_was = self.pr.aptpl
        command = pr_out.PrOut(
            self.pr,
            self.ua,
            nexus,
            params,
            cdb[2] & 0x0F,
            cdb[2] >> 4,
            self.target_ports,
            self.max_registrations,
            self.reservation_lost,
            [],  # aborted
            self.profile,
            action,
            1,  # generations
            self.nexuses,
        )  # positional: keywords cost a visible share of a PR OUT here
        # Every handler checks everything before it changes anything, so a command that ends
        # in an error or a conflict leaves the state untouched (SPC-5 5.14.1).
        rule.apply(command)
        if rule.bumps_generation:
            self.pr.bump_generation(command.generations)
        # a lost reservation lets only REPLACE LOST RESERVATION through (``PR_LOST_ALLOWED``):
        # done, it ends the condition
        self.reservation_lost = False
        self.last_aborted = command.aborted
        if self.store is not None:
            self._save_aptpl(aptpl_was)

    # -- APTPL ------------------------------------------------------------------------------
    def _save_aptpl(self, aptpl_was: bool) -> None:
        """SPC-5 5.14.5: while APTPL is active every change is persisted; turning it off
        persists the fact that nothing survives power loss."""
        if self.store is None or not (self.pr.aptpl or aptpl_was):
            return
        state = self.pr.to_dict()
        if not self.pr.aptpl:
            state = PersistentReservations().to_dict()
        self.store.save(state)

    def _load_aptpl(self) -> None:
        saved = self.store.load() if self.store is not None else None
        try:
            pr = PersistentReservations() if not saved else PersistentReservations.from_dict(saved)
        except StateFormatError as e:  # said apart from the same fault in the live state
            raise StateFormatError(f"APTPL image: {e}", e.field, e.what) from e
        pr.generation = 0  # PRGENERATION is not preserved (SPC-5 6.16.2)
        if not pr.aptpl:
            pr = PersistentReservations()
        self.pr = pr

    # -- events -----------------------------------------------------------------------------
    def attach(self, nexus: ITNexus) -> None:
        """An I_T nexus now exists (a login, a loopback nexus) before it sends anything: LIO
        registers a SPEC_I_PT TransportID, and moves a reservation, only where one does."""
        self.nexuses.add(nexus)

    def power_loss(self) -> None:
        """Everything volatile is gone; the LU answers nothing useful until ``power_on``."""
        self.powered = False
        self.pr = PersistentReservations()
        self.ua = UnitAttentions()
        self.spc2_holder = None

    def power_on(self) -> None:
        """Restore APTPL state from the store; POWER ON OCCURRED for every I_T nexus."""
        self.powered = True
        self._load_aptpl()
        self.spc2_holder = None
        self.ua.establish_for_all(POWER_ON_OCCURRED)

    def hard_reset(self) -> None:
        """SAM-5 6.3.2: SPC-2 reservations are released; persistent reservations are not."""
        self.spc2_holder = None
        self.ua.establish_for_all(POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)

    def lun_reset(self) -> None:
        """SAM-5 7.7 LOGICAL UNIT RESET: like a hard reset for this LU."""
        self.spc2_holder = None
        self.ua.establish_for_all(BUS_DEVICE_RESET_FUNCTION_OCCURRED)

    def nexus_loss(self, nexus: ITNexus) -> None:
        """SAM-5 6.3.4: registrations survive; an SPC-2 reservation of that nexus does not."""
        if self.spc2_holder == nexus:
            self.spc2_holder = None
        self.ua.clear(nexus)
        self.ua.establish([nexus], I_T_NEXUS_LOSS_OCCURRED)

    def lose_reservations(self) -> None:
        """The device server lost its PR information (SPC-5 5.14.5): media access fails with
        PERSISTENT RESERVATION INFORMATION LOST until REPLACE LOST RESERVATION."""
        self.pr = PersistentReservations(generation=self.pr.generation)
        self.reservation_lost = True

    # -- snapshots (shared LUs across processes) ---------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "pr": self.pr.to_dict(),
            "ua": self.ua.to_dict(),
            "spc2_holder": None if self.spc2_holder is None else nexus_to_dict(self.spc2_holder),
            "powered": self.powered,
            "reservation_lost": self.reservation_lost,
            "nexuses": sorted((nexus_to_dict(n) for n in self.nexuses), key=_nexus_order),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Inverse of ``snapshot``; StateFormatError (nothing changed) for anything it did not
        write, ProfileMismatch for a snapshot of an LU with another profile (a snapshot from
        before profiles existed is an ``spc5`` LU's)."""
        with reading_state("LU snapshot"):
            saved = str_field(snapshot, "profile", profiles.DEFAULT_PROFILE)
            pr = PersistentReservations.from_dict(snapshot["pr"])
            ua = UnitAttentions.from_dict(snapshot["ua"])
            holder = snapshot.get("spc2_holder")
            spc2_holder = None if holder is None else nexus_from_dict(holder)
            # not bool(): a hand-edited "no" would read as true
            powered = bool_field(snapshot, "powered", True)
            reservation_lost = bool_field(snapshot, "reservation_lost", False)
            nexuses = {nexus_from_dict(n) for n in snapshot.get("nexuses", ())}
        if saved != self.profile.name:
            raise ProfileMismatch(saved, self.profile.name)
        self.pr, self.ua, self.spc2_holder = pr, ua, spc2_holder
        self.powered, self.reservation_lost = powered, reservation_lost
        self.nexuses = nexuses

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any], **kwargs: Any) -> LogicalUnit:
        lu = cls(**kwargs)
        lu.restore(snapshot)
        return lu
