"""Full feature phase of one session (RFC 7143 chapter 4 and 11): what each PDU leads to.

``FullFeatureSession`` gets the initiator's PDUs once login is over. Commands, task management,
text and logout requests go through the CmdSN window and are handled in CmdSN order; Data-Out
PDUs feed the write being collected; NOP-Outs are answered. SCSI commands with all their data
become ``CommandReceived`` events; their replies come back through ``complete_command``, which
sends Data-In/SCSI Response. ``send`` queues PDUs (already stamped with StatSN, ExpCmdSN and
MaxCmdSN), ``emit`` queues events, ``refuse`` turns a protocol error into a Reject. With
MaxConnections=1 a session is one connection, so StatSN lives here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from scsi_pr.sim.constants import (
    INSUFFICIENT_RESOURCES,
    PROTOCOL_SERVICE_CRC_ERROR,
    SenseKey,
    Status,
)
from scsi_pr.sim.result import fixed_sense
from scsi_pr.target.proto.constants import (
    RESERVED_TAG,
    LogoutReason,
    LogoutResponseCode,
    RejectReason,
    TaskManagementFunction,
    TaskManagementResponseCode,
)
from scsi_pr.target.proto.datain import Residual, SequenceNumbers, read_reply, scsi_response
from scsi_pr.target.proto.discovery import Portal, TextExchange, answer_text
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError
from scsi_pr.target.proto.events import (
    CommandReceived,
    Event,
    LogoutReceived,
    TaskManagementReceived,
)
from scsi_pr.target.proto.layout import Pdu, decode_lun
from scsi_pr.target.proto.login import TargetNode
from scsi_pr.target.proto.negotiation import SessionParameters
from scsi_pr.target.proto.pdus import (
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    SnackRequest,
    TextRequest,
)
from scsi_pr.target.proto.scsi_pdus import (
    ReadyToTransfer,
    ScsiCommand,
    ScsiDataOut,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
)
from scsi_pr.target.proto.sequencing import CommandWindow, StatusSequence, TagPool, sn_lt
from scsi_pr.target.proto.text import Pairs
from scsi_pr.target.proto.transfer import DataOutError, UnknownTransfer, WriteCollector

CHECK_CONDITION = Status.CHECK_CONDITION
#: the sense of a write whose data failed the digest (RFC 7143 7.8) and of a write larger than
#: this target buffers
CRC_ERROR_SENSE = fixed_sense(SenseKey.ABORTED_COMMAND, PROTOCOL_SERVICE_CRC_ERROR)
NO_RESOURCES_SENSE = fixed_sense(SenseKey.ILLEGAL_REQUEST, INSUFFICIENT_RESOURCES)
#: functions that end every write still collecting data on the LUN (or the whole target)
LUN_WIDE = {
    TaskManagementFunction.ABORT_TASK_SET,
    TaskManagementFunction.CLEAR_TASK_SET,
    TaskManagementFunction.LOGICAL_UNIT_RESET,
}
UNTAKEN = {SnackRequest: RejectReason.SNACK_REJECT}
TARGET_WIDE = {TaskManagementFunction.TARGET_WARM_RESET, TaskManagementFunction.TARGET_COLD_RESET}


class TaskInProgress(RemoteProtocolError):
    """A command reuses the Initiator Task Tag of a task still in progress (11.17.1, 0x07)."""

    reject_reason = RejectReason.TASK_IN_PROGRESS


class NotInThisSession(RemoteProtocolError):
    """A request the session cannot take (e.g. a SCSI command in a discovery session)."""


@dataclass
class _Task:
    request: Any  # the PDU that opened the task
    collector: WriteCollector | None = None
    tags: list[int] = field(default_factory=list)


class FullFeatureSession:
    """The single connection's full feature phase; see the module docstring."""

    def __init__(
        self,
        params: SessionParameters,
        *,
        stat_sn: int,
        exp_cmd_sn: int,
        command_window: int,
        max_immediate: int,
        max_write_length: int,
        targets: tuple[TargetNode, ...],
        portals: tuple[Portal, ...],
        send: Callable[[Pdu], None],
        emit: Callable[[Event], None],
        refuse: Callable[[RemoteProtocolError], None],
    ) -> None:
        self.params = params
        self.window: CommandWindow[Any] = CommandWindow(exp_cmd_sn, command_window, max_immediate)
        self.status = StatusSequence(stat_sn)
        self.tags = TagPool()
        self.max_write_length = max_write_length
        self._targets, self._portals = targets, portals
        self._send, self._emit, self._refuse = send, emit, refuse
        self._tasks: dict[int, _Task] = {}
        self._ready: list[Any] = []  # immediate requests admitted, not run yet
        self._text = TextExchange(self._answer_text, self.tags.allocate, self.tags.release)
        self.ping: tuple[int, float] | None = None  # (TTT, time sent) of our NOP-In
        self.data_outs = 0  # Data-Outs for a waiting write: the edge's measure of progress
        self._handlers: dict[type, Callable[[Any], None]] = {
            NopOut: self._nop_out,
            ScsiCommand: self._scsi_command,
            TaskManagementFunctionRequest: self._task_management,
            TextRequest: self._text_request,
            LogoutRequest: self._logout,
        }

    # -- input ------------------------------------------------------------------------------
    def receive(self, pdu: Pdu) -> None:
        """One PDU from the initiator (never a Login Request: the connection refuses those)."""
        if hasattr(pdu, "exp_stat_sn"):
            self.status.acknowledge(pdu.exp_stat_sn)  # type: ignore[attr-defined]
        if isinstance(pdu, ScsiDataOut):
            return self._data_out(pdu)
        if isinstance(pdu, NopOut) and pdu.initiator_task_tag == RESERVED_TAG:
            return self._nop_out_reply(pdu)
        if type(pdu) not in self._handlers:  # a SNACK (ErrorRecoveryLevel 0), a Login Request
            reason = UNTAKEN.get(type(pdu), RejectReason.PROTOCOL_ERROR)
            raise RemoteProtocolError(f"{type(pdu).__name__} is not taken", reject_reason=reason)
        if self.params.discovery and isinstance(pdu, (ScsiCommand, TaskManagementFunctionRequest)):
            raise NotInThisSession("a discovery session takes only Text and Logout (13.21)")
        immediate, cmd_sn = pdu.immediate, pdu.cmd_sn  # type: ignore[attr-defined]
        if (now := self.window.admit(cmd_sn, immediate, pdu)) is not None:
            self._ready.append(now)
        self._run_ready()

    def _run_ready(self) -> None:
        """Run the immediate requests admitted, then the queued ones in CmdSN order, one at a
        time: a request rejected here gives its CmdSN back before the next one is taken."""
        while True:
            if self._ready:
                request = self._ready.pop(0)
            elif (request := self.window.take()) is None:
                return
            try:
                self._handlers[type(request)](request)
            except RemoteProtocolError as e:
                if request.immediate:
                    self._finish(request)
                else:  # not received (RFC 3720 6.3): a gap the initiator has to plug
                    self.window.reject(request.cmd_sn)
                self._refuse(e.with_header(e.header or request.bhs()))

    def _finish(self, request: Any) -> None:
        """The request's reply is going out: its CmdSN slot opens (4.2.2.1)."""
        self.window.finished(request.immediate)

    def numbers(self, take: bool = True) -> SequenceNumbers:
        stat_sn = self.status.take() if take else self.status.peek()
        return SequenceNumbers(stat_sn, self.window.exp_cmd_sn, self.window.max_cmd_sn)

    def _reply(self, request: Any, pdu: Pdu) -> None:
        """Send the status-bearing ``pdu`` answering ``request`` (window first, then stamp)."""
        self._finish(request)
        numbers = self.numbers()
        self._send(
            replace(
                pdu,
                stat_sn=numbers.stat_sn,
                exp_cmd_sn=numbers.exp_cmd_sn,
                max_cmd_sn=numbers.max_cmd_sn,
            )
        )

    # -- NOP --------------------------------------------------------------------------------
    def _nop_out(self, pdu: NopOut) -> None:
        data = pdu.data[: self.params.max_recv_data_segment_length]
        self._reply(pdu, NopIn(lun=pdu.lun, initiator_task_tag=pdu.initiator_task_tag, data=data))

    def _nop_out_reply(self, pdu: NopOut) -> None:
        """ITT 0xffffffff: the answer to our ping, or an initiator's no-reply ping (11.18)."""
        if pdu.target_transfer_tag == RESERVED_TAG:
            return
        if self.ping is None or pdu.target_transfer_tag != self.ping[0]:
            raise UnknownTransfer(f"NOP-Out echoes TTT {pdu.target_transfer_tag:#x}")
        self.tags.release(self.ping[0])
        self.ping = None

    def send_ping(self, now: float) -> None:
        """A NOP-In asking for a NOP-Out (11.19): it carries StatSN without taking it."""
        tag = self.tags.allocate()
        self.ping = (tag, now)
        numbers = self.numbers(take=False)
        self._send(
            NopIn(
                target_transfer_tag=tag,
                stat_sn=numbers.stat_sn,
                exp_cmd_sn=numbers.exp_cmd_sn,
                max_cmd_sn=numbers.max_cmd_sn,
            )
        )

    # -- SCSI commands and their data -------------------------------------------------------
    def _scsi_command(self, command: ScsiCommand) -> None:
        if command.initiator_task_tag in self._tasks:
            raise TaskInProgress(f"ITT {command.initiator_task_tag:#x} is in use")
        task = _Task(command)
        if command.write and command.expected_data_transfer_length > self.max_write_length:
            self._reply(
                command,
                scsi_response(
                    command.initiator_task_tag,
                    CHECK_CONDITION,
                    self.numbers(take=False),
                    sense=NO_RESOURCES_SENSE,
                ),
            )
            return
        if command.write:
            task.collector = WriteCollector(command, self.params)
        elif command.data:
            raise DataOutError("immediate data with a command that writes nothing")
        self._tasks[command.initiator_task_tag] = task
        self._collected(task)

    def _data_out(self, pdu: ScsiDataOut, lost: int | None = None) -> None:
        """A Data-Out's data, or (``lost``: its length) the news that a digest error lost it."""
        task = self._tasks.get(pdu.initiator_task_tag)
        if task is None or task.collector is None:
            raise UnknownTransfer(f"Data-Out for no write (ITT {pdu.initiator_task_tag:#x})")
        self.data_outs += 1
        task.collector.receive(pdu, lost=lost)
        self._collected(task)

    def data_digest_error(self, pdu: Pdu | None, length: int) -> None:
        """A Data-Out lost to a digest error still ends its burst; the write then fails (7.8)."""
        if isinstance(pdu, ScsiDataOut):
            self._data_out(pdu, lost=length)

    def _collected(self, task: _Task) -> None:
        collector, command = task.collector, task.request
        if collector is not None and not collector.complete:
            for r2t in collector.next_r2ts(self.tags.allocate):
                task.tags.append(r2t.target_transfer_tag)
                numbers = self.numbers(take=False)  # an R2T carries StatSN, does not take it
                self._send(
                    ReadyToTransfer(
                        lun=command.lun,
                        initiator_task_tag=command.initiator_task_tag,
                        target_transfer_tag=r2t.target_transfer_tag,
                        stat_sn=numbers.stat_sn,
                        exp_cmd_sn=numbers.exp_cmd_sn,
                        max_cmd_sn=numbers.max_cmd_sn,
                        r2t_sn=r2t.r2t_sn,
                        buffer_offset=r2t.buffer_offset,
                        desired_data_transfer_length=r2t.desired_data_transfer_length,
                    )
                )
            return
        task.collector = None  # all its data came: no longer collecting, whatever follows
        if collector is not None and collector.corrupted:
            self.complete_command(
                command.initiator_task_tag, CHECK_CONDITION, sense=CRC_ERROR_SENSE
            )
            return
        self._emit(
            CommandReceived(
                initiator_task_tag=command.initiator_task_tag,
                lun=decode_lun(command.lun),
                lun_field=command.lun,
                cdb=command.cdb,
                data=collector.data if collector is not None else b"",
                read=command.read,
                write=command.write,
                expected_data_transfer_length=command.expected_data_transfer_length,
                attributes=command.attributes,
                immediate=command.immediate,
            )
        )

    def complete_command(
        self,
        itt: int,
        status: int,
        *,
        data: bytes = b"",
        sense: bytes = b"",
        transferred: int | None = None,
    ) -> None:
        """Send a command's reply: read ``data`` (Data-In), ``status``, ``sense``.

        ``transferred``: the write data the command used, when less or more than it received
        (reported as a residual, 11.4.5).
        """
        task = self._tasks.get(itt)
        if task is None or not isinstance(task.request, ScsiCommand):
            raise LocalProtocolError(f"no SCSI command with ITT {itt:#x} awaits completion")
        del self._tasks[itt]
        self._release(task)
        command = task.request
        self._finish(command)
        numbers = self.numbers()
        if command.read and data:
            pdus = read_reply(
                initiator_task_tag=itt,
                lun=command.lun,
                expected_length=command.expected_data_transfer_length,
                data=data,
                status=status,
                sense=sense,
                numbers=numbers,
                max_segment=self.params.max_recv_data_segment_length,
                max_burst=self.params.max_burst_length,
            )
        else:
            moved = len(data) if command.read else transferred
            residual = (
                Residual()
                if moved is None
                else Residual.of(command.expected_data_transfer_length, moved)
            )
            pdus = [scsi_response(itt, status, numbers, sense=sense, residual=residual)]
        for pdu in pdus:
            self._send(pdu)
        self._run_ready()

    def abort_command(self, itt: int) -> None:
        """End a command handed out as ``CommandReceived`` without a reply: a task management
        function aborted it (SAM-5 7.2; no response for an aborted task, RFC 7143 4.2.3.3)."""
        task = self._tasks.get(itt)
        if task is None or not isinstance(task.request, ScsiCommand):
            raise LocalProtocolError(f"no SCSI command with ITT {itt:#x} awaits completion")
        del self._tasks[itt]
        self._release(task)
        self._finish(task.request)
        self._run_ready()

    def _release(self, task: _Task) -> None:
        for tag in task.tags:
            self.tags.release(tag)

    # -- task management ----------------------------------------------------------------------
    def _task_management(self, request: TaskManagementFunctionRequest) -> None:
        if request.initiator_task_tag in self._tasks:
            raise TaskInProgress(f"ITT {request.initiator_task_tag:#x} is in use")
        function, code = request.function, None
        if function == TaskManagementFunction.TASK_REASSIGN:  # ErrorRecoveryLevel 0 (6.2.2)
            code = TaskManagementResponseCode.TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED
        elif (
            function == TaskManagementFunction.ABORT_TASK
            and request.referenced_task_tag not in self._tasks
        ):
            code = self._abort_absent_task(request)
        if code is not None:
            return self._answer_function(request, code)

        def hit(itt: int, command: ScsiCommand) -> bool:
            return (
                function in TARGET_WIDE
                or (function in LUN_WIDE and command.lun == request.lun)
                or (
                    function == TaskManagementFunction.ABORT_TASK
                    and itt == request.referenced_task_tag
                )
            )

        # RFC 7143 11.5.1: a function acts on every command of the session with a CmdSN
        # lower than its own, those still waiting behind a CmdSN gap too
        aborted = self._abort_collecting(hit) + self._withdraw_held(
            lambda itt, command: sn_lt(command.cmd_sn, request.cmd_sn) and hit(itt, command)
        )
        self._tasks[request.initiator_task_tag] = _Task(request)
        self._emit(
            TaskManagementReceived(
                initiator_task_tag=request.initiator_task_tag,
                function=function,
                lun=decode_lun(request.lun),
                referenced_task_tag=request.referenced_task_tag,
                aborted=tuple(aborted),
            )
        )

    def _abort_absent_task(self, request: TaskManagementFunctionRequest) -> int:
        """ABORT TASK of a task neither running nor collecting data (RFC 7143 11.6.1): one
        waiting behind a CmdSN gap is aborted (no response, its CmdSN counts as received);
        otherwise a RefCmdSN in the window and before the request's own CmdSN is considered
        received, closing the gap a lost command left ("Function complete"); else "Task does
        not exist"."""
        rtt = request.referenced_task_tag
        held = self._withdraw_held(lambda itt, _: itt == rtt)
        if held or (
            sn_lt(request.ref_cmd_sn, request.cmd_sn) and self.window.plug(request.ref_cmd_sn)
        ):
            return TaskManagementResponseCode.FUNCTION_COMPLETE
        return TaskManagementResponseCode.TASK_DOES_NOT_EXIST

    def _abort_collecting(self, hit: Callable[[int, ScsiCommand], bool]) -> list[int]:
        """End the writes still collecting data that ``hit`` names: no response for an aborted
        task, their CmdSN slots open. Their ITTs."""
        aborted = []
        for itt, task in list(self._tasks.items()):
            command = task.request
            collecting = isinstance(command, ScsiCommand) and task.collector is not None
            if collecting and hit(itt, command):
                del self._tasks[itt]
                self._release(task)
                self._finish(command)
                aborted.append(itt)
        return aborted

    def _withdraw_held(self, hit: Callable[[int, ScsiCommand], bool]) -> list[int]:
        """End the commands waiting behind a CmdSN gap that ``hit`` names: never run, no
        response (an aborted task), their CmdSNs received. Their ITTs."""
        held = self.window.withdraw(
            lambda item: isinstance(item, ScsiCommand) and hit(item.initiator_task_tag, item)
        )
        return [command.initiator_task_tag for command in held]

    def abort_collecting(self, lun: int | None) -> list[int]:
        """Another session's CLEAR TASK SET, LOGICAL UNIT RESET or TARGET WARM RESET: end this
        session's writes still collecting data on ``lun`` (None: every LUN), and its commands
        waiting behind a CmdSN gap there, as the issuing session's own are (SAM-5 7.5, 7.6,
        7.9: every I_T nexus's tasks). Their ITTs."""

        def hit(_: int, command: ScsiCommand) -> bool:
            return lun is None or decode_lun(command.lun) == lun

        aborted = self._abort_collecting(hit) + self._withdraw_held(hit)
        self._run_ready()
        return aborted

    def complete_task_management(self, itt: int, response: TaskManagementResponseCode) -> None:
        task = self._tasks.get(itt)
        if task is None or not isinstance(task.request, TaskManagementFunctionRequest):
            raise LocalProtocolError(f"no task management function with ITT {itt:#x} is pending")
        del self._tasks[itt]
        self._answer_function(task.request, response)
        self._run_ready()

    def _answer_function(self, request: TaskManagementFunctionRequest, code: int) -> None:
        pdu = TaskManagementFunctionResponse(
            response=code, initiator_task_tag=request.initiator_task_tag
        )
        self._reply(request, pdu)

    # -- text and logout ------------------------------------------------------------------------
    def _text_request(self, request: TextRequest) -> None:
        response = self._text.receive(request, self.params.max_recv_data_segment_length)
        self._reply(request, response)

    def _answer_text(self, pairs: Pairs) -> list[tuple[str, str]]:
        out, self.params = answer_text(pairs, self.params, self._targets, self._portals)
        return out

    def _logout(self, request: LogoutRequest) -> None:
        reason = request.reason_code
        code = LogoutResponseCode.CONNECTION_OR_SESSION_CLOSED_SUCCESSFULLY
        if reason == LogoutReason.REMOVE_THE_CONNECTION_FOR_RECOVERY:
            code = LogoutResponseCode.CONNECTION_RECOVERY_IS_NOT_SUPPORTED
        elif reason == LogoutReason.CLOSE_THE_CONNECTION and request.cid != self.params.cid:
            code = LogoutResponseCode.CID_NOT_FOUND
        self._reply(
            request, LogoutResponse(response=code, initiator_task_tag=request.initiator_task_tag)
        )
        if code == LogoutResponseCode.CONNECTION_OR_SESSION_CLOSED_SUCCESSFULLY:
            for task in self._tasks.values():
                self._release(task)
            self._tasks.clear()
            self._emit(LogoutReceived(reason))

    @property
    def waiting_for_data(self) -> bool:
        """Whether a write is still collecting its data."""
        return any(t.collector is not None for t in self._tasks.values())

    @property
    def tasks(self) -> list[int]:
        """ITTs of commands and functions not completed yet."""
        return list(self._tasks)
