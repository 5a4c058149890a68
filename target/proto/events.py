"""What a ``TargetConnection`` tells the I/O edge, as frozen events.

The edge acts on few of them: it executes ``CommandReceived`` on the logical unit and answers
with ``TargetConnection.complete_command``, applies ``TaskManagementReceived`` and answers with
``complete_task_management``, registers the I_T nexus on ``LoginCompleted`` and ends it on
``LogoutReceived`` or ``ConnectionClosed``. ``Rejected`` is for the log: the connection has
already queued the Reject or login failure the RFC asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.target.proto.errors import RemoteProtocolError
from scsi_pr.target.proto.negotiation import SessionParameters


@dataclass(frozen=True)
class LoginCompleted:
    """Full feature phase begins: ``parameters`` name the session (initiator, ISID, TSIH)."""

    parameters: SessionParameters


@dataclass(frozen=True)
class CommandReceived:
    """A SCSI command, in CmdSN order, with all its write data: execute it, then complete it.

    ``lun`` is the LUN number (None when the LUN field uses an addressing method this target
    does not decode; the raw field is ``lun_field``).
    """

    initiator_task_tag: int
    lun: int | None
    lun_field: int
    cdb: bytes
    data: bytes
    read: bool
    write: bool
    expected_data_transfer_length: int
    attributes: int
    immediate: bool


@dataclass(frozen=True)
class TaskManagementReceived:
    """A task management function; ``aborted`` lists the ITTs the connection dropped already
    (writes still collecting data). Apply the function, then ``complete_task_management``."""

    initiator_task_tag: int
    function: int
    lun: int | None
    referenced_task_tag: int
    aborted: tuple[int, ...]


@dataclass(frozen=True)
class LogoutReceived:
    """The initiator logged out; the Logout Response is queued, the connection then closes."""

    reason: int


@dataclass(frozen=True)
class Rejected:
    """The initiator broke the protocol; the Reject (or login failure) is queued already."""

    error: RemoteProtocolError


@dataclass(frozen=True)
class ConnectionClosed:
    """The connection is over (peer closed, fatal error, logout, ping timeout): close it
    once ``data_to_send`` is drained. Not after a logout, this is I_T nexus loss."""

    reason: str
    clean: bool = False


Event = (
    LoginCompleted
    | CommandReceived
    | TaskManagementReceived
    | LogoutReceived
    | Rejected
    | ConnectionClosed
)
