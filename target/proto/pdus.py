"""The iSCSI control PDUs of RFC 7143 chapter 11 as frozen dataclasses with their BHS layouts.

NOP-Out/In, Login, Text, Logout, Asynchronous Message, Reject and SNACK; the PDUs that carry
SCSI commands, status, data and task management are in ``scsi_pdus``. Field names are the RFC's
in snake case (``initiator_task_tag``, ``exp_cmd_sn``); integers hold the wire values and code
fields decode to the named constants when the value is defined. The C (Continue) bit is
``continues``. Tags default to the reserved tag 0xffffffff where the RFC uses it for "none".
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.target.proto.constants import (
    CONTINUE_BIT,
    CSG_MASK,
    FUNCTION_MASK,
    IMMEDIATE_BIT,
    NSG_MASK,
    RESERVED_TAG,
    TRANSIT_BIT,
    AsyncEvent,
    LoginStatus,
    LogoutReason,
    LogoutResponseCode,
    Opcode,
    RejectReason,
    SnackType,
    Stage,
)
from scsi_pr.target.proto.layout import (
    CMD_SN,
    EXP_STAT_SN,
    F_SET,
    FINAL,
    IMMEDIATE,
    ITT,
    LUN,
    NO_TASK,
    TARGET_SNS,
    TTT,
    Field,
    Pdu,
    bits,
    flag,
    u8,
    u16,
    u32,
)


@dataclass(frozen=True)
class NopOut(Pdu):
    """11.18: a ping from the initiator, or its answer to a target's NOP-In."""

    OPCODE = Opcode.NOP_OUT
    LAYOUT = (IMMEDIATE, LUN, ITT, TTT, CMD_SN, EXP_STAT_SN)
    FIXED = F_SET
    HAS_DATA = True
    immediate: bool = False
    lun: int = 0
    initiator_task_tag: int = RESERVED_TAG
    target_transfer_tag: int = RESERVED_TAG
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class NopIn(Pdu):
    """11.19: the target's answer to a NOP-Out, or its own ping (ITT 0xffffffff)."""

    OPCODE = Opcode.NOP_IN
    LAYOUT = (LUN, ITT, TTT, *TARGET_SNS)
    FIXED = F_SET
    HAS_DATA = True
    lun: int = 0
    initiator_task_tag: int = RESERVED_TAG
    target_transfer_tag: int = RESERVED_TAG
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    data: bytes = b""


LOGIN_STAGES = (
    flag("transit", TRANSIT_BIT),
    flag("continues", CONTINUE_BIT),
    bits("csg", CSG_MASK, Stage),
    bits("nsg", NSG_MASK, Stage),
)
ISID_TSIH = (Field("isid", 8, 6), u16("tsih", 14))


@dataclass(frozen=True)
class LoginRequest(Pdu):
    """11.12: one step of the login phase (always immediate)."""

    OPCODE = Opcode.LOGIN_REQUEST
    LAYOUT = (*LOGIN_STAGES, u8("version_max", 2), u8("version_min", 3), *ISID_TSIH, ITT,
              u16("cid", 20), CMD_SN, EXP_STAT_SN)  # fmt: skip
    FIXED = ((0, IMMEDIATE_BIT),)
    HAS_DATA = True
    transit: bool = False
    continues: bool = False
    csg: int = Stage.SECURITY_NEGOTIATION
    nsg: int = Stage.SECURITY_NEGOTIATION
    version_max: int = 0
    version_min: int = 0
    isid: int = 0
    tsih: int = 0
    initiator_task_tag: int = 0
    cid: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class LoginResponse(Pdu):
    """11.13: the target's step of the login phase; a non-zero status ends it."""

    OPCODE = Opcode.LOGIN_RESPONSE
    LAYOUT = (*LOGIN_STAGES, u8("version_max", 2), u8("version_active", 3), *ISID_TSIH, ITT,
              *TARGET_SNS, u8("status_class", 36), u8("status_detail", 37))  # fmt: skip
    HAS_DATA = True
    transit: bool = False
    continues: bool = False
    csg: int = Stage.SECURITY_NEGOTIATION
    nsg: int = Stage.SECURITY_NEGOTIATION
    version_max: int = 0
    version_active: int = 0
    isid: int = 0
    tsih: int = 0
    initiator_task_tag: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    status_class: int = 0
    status_detail: int = 0
    data: bytes = b""

    @property
    def status(self) -> int:
        """Status-Class and Status-Detail as one ``LoginStatus`` (or int if undefined)."""
        value = self.status_class << 8 | self.status_detail
        return LoginStatus(value) if value in LoginStatus._value2member_map_ else value


@dataclass(frozen=True)
class TextRequest(Pdu):
    """11.10: text keys in full feature phase (SendTargets, renegotiation)."""

    OPCODE = Opcode.TEXT_REQUEST
    LAYOUT = (IMMEDIATE, FINAL, flag("continues", CONTINUE_BIT), LUN, ITT, TTT, CMD_SN,
              EXP_STAT_SN)  # fmt: skip
    HAS_DATA = True
    immediate: bool = False
    final: bool = True
    continues: bool = False
    lun: int = 0
    initiator_task_tag: int = 0
    target_transfer_tag: int = RESERVED_TAG
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class TextResponse(Pdu):
    """11.11: the target's text answer; F=0 with a TTT asks the initiator to fetch more."""

    OPCODE = Opcode.TEXT_RESPONSE
    LAYOUT = (FINAL, flag("continues", CONTINUE_BIT), LUN, ITT, TTT, *TARGET_SNS)
    HAS_DATA = True
    final: bool = True
    continues: bool = False
    lun: int = 0
    initiator_task_tag: int = 0
    target_transfer_tag: int = RESERVED_TAG
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class LogoutRequest(Pdu):
    """11.14: close the session or a connection."""

    OPCODE = Opcode.LOGOUT_REQUEST
    LAYOUT = (IMMEDIATE, bits("reason_code", FUNCTION_MASK, LogoutReason), ITT, u16("cid", 20),
              CMD_SN, EXP_STAT_SN)  # fmt: skip
    FIXED = F_SET
    immediate: bool = False
    reason_code: int = LogoutReason.CLOSE_THE_SESSION
    initiator_task_tag: int = 0
    cid: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0


@dataclass(frozen=True)
class LogoutResponse(Pdu):
    """11.15: the logout outcome, with Time2Wait/Time2Retain."""

    OPCODE = Opcode.LOGOUT_RESPONSE
    LAYOUT = (u8("response", 2, LogoutResponseCode), ITT, *TARGET_SNS, u16("time2wait", 40),
              u16("time2retain", 42))  # fmt: skip
    FIXED = F_SET
    response: int = LogoutResponseCode.CONNECTION_OR_SESSION_CLOSED_SUCCESSFULLY
    initiator_task_tag: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    time2wait: int = 0
    time2retain: int = 0


@dataclass(frozen=True)
class AsynchronousMessage(Pdu):
    """11.9: an event from the target (a SCSI async event with sense, a logout request...)."""

    OPCODE = Opcode.ASYNCHRONOUS_MESSAGE
    LAYOUT = (LUN, *TARGET_SNS, u8("async_event", 36, AsyncEvent), u8("async_vcode", 37),
              u16("parameter1", 38), u16("parameter2", 40), u16("parameter3", 42))  # fmt: skip
    FIXED = (*F_SET, *NO_TASK)
    HAS_DATA = True
    lun: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    async_event: int = AsyncEvent.SCSI_ASYNC_EVENT
    async_vcode: int = 0
    parameter1: int = 0
    parameter2: int = 0
    parameter3: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class Reject(Pdu):
    """11.17: the target refuses a PDU; the data segment is that PDU's header."""

    OPCODE = Opcode.REJECT
    LAYOUT = (u8("reason", 2, RejectReason), *TARGET_SNS, u32("data_sn_or_r2t_sn", 36))
    FIXED = (*F_SET, *NO_TASK)
    HAS_DATA = True
    reason: int = RejectReason.PROTOCOL_ERROR
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    data_sn_or_r2t_sn: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class SnackRequest(Pdu):
    """11.16: a retransmission request; only refused here (ErrorRecoveryLevel 0)."""

    OPCODE = Opcode.SNACK_REQUEST
    LAYOUT = (bits("type", 0x0F, SnackType), LUN, ITT, u32("target_transfer_tag_or_snack_tag", 20),
              EXP_STAT_SN, u32("beg_run", 40), u32("run_length", 44))  # fmt: skip
    FIXED = F_SET
    type: int = SnackType.DATA_R2T
    lun: int = 0
    initiator_task_tag: int = RESERVED_TAG
    target_transfer_tag_or_snack_tag: int = RESERVED_TAG
    exp_stat_sn: int = 0
    beg_run: int = 0
    run_length: int = 0
