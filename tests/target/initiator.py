"""A small blocking iSCSI initiator for the live-target tests, built from the codec's PDUs.

It does what the tests need and no more: one login (AuthMethod None, optional digests), one
command at a time (Data-Out on R2T, Data-In collected), task management, NOP-In pings answered,
logout, and an abrupt close (what a crashed host does: I_T nexus loss). Every wait has a timeout,
so a target that stops answering fails the test instead of hanging it.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

from scsi_pr.target.proto import (
    Framer,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Pdu,
    ReadyToTransfer,
    Reject,
    Role,
    ScsiCommand,
    ScsiDataIn,
    ScsiDataOut,
    ScsiResponse,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
    TextRequest,
    TextResponse,
)
from scsi_pr.target.proto.text import build_text, parse_text

TIMEOUT = 10.0
SECURITY, OPERATIONAL, FULL_FEATURE = 0, 1, 3  # login stages (RFC 7143 11.12.3)
MUTUAL_IDENTIFIER, MUTUAL_CHALLENGE = 9, bytes.fromhex("00112233445566778899aabbccddeeff")
MAX_RECV = 262144  # the MaxRecvDataSegmentLength this initiator declares


@dataclass(frozen=True)
class Chap:
    """The initiator's CHAP name and secret, and the target's for mutual CHAP."""

    name: str
    secret: bytes
    mutual: tuple[str, bytes] | None = None


def _md5(identifier: int, secret: bytes, challenge: bytes) -> str:
    return hashlib.md5(bytes([identifier]) + secret + challenge).hexdigest()


class TargetGone(Exception):
    """The target closed the connection."""


@dataclass
class Reply:
    status: int
    data: bytes = b""
    sense: bytes = b""
    residual: tuple[bool, bool, int] = (False, False, 0)  # overflow, underflow, count

    @property
    def key_asc_ascq(self) -> tuple[int, int, int] | None:
        if len(self.sense) < 14:
            return None
        return (self.sense[2] & 0x0F, self.sense[12], self.sense[13])


class Initiator:
    """One connection, one session. ``close_all()`` closes every one still open (the target
    tests' conftest does after each test: a test about the target need not tidy its hosts)."""

    _open: ClassVar[list[Initiator]] = []  # held until close_all: none is finalised mid-test

    def __init__(self, address: tuple[str, int], name: str, isid: int = 0x400001) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        Initiator._open.append(self)
        self.name, self.isid = name, isid
        self.framer = Framer(Role.INITIATOR, max_recv_data_segment_length=MAX_RECV)
        self.cmd_sn = 1
        self.exp_stat_sn = 0
        self.itt = 0
        self.tsih = 0
        self.rejects: list[Reject] = []

    @property
    def peer(self) -> str:
        """This end of the connection as the target names it (``host:port``)."""
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def session_name(self) -> str:
        """How the target's log names this normal session: its initiator port (the name
        lowercased, as TransportIDs compare), TSIH and peer."""
        return f"{self.name.lower()},i,{self.isid:#014x} TSIH {self.tsih} from {self.peer}"

    # -- bytes ------------------------------------------------------------------------------
    def send(self, pdu: Pdu) -> None:
        self.sock.sendall(self.framer.send(pdu))

    def receive(self) -> Pdu:
        """The next PDU that is not a NOP-In ping (pings are answered here)."""
        while True:
            pdu = self.framer.next_pdu()
            if isinstance(pdu, Pdu):
                if hasattr(pdu, "stat_sn") and not isinstance(pdu, (ScsiDataIn, ReadyToTransfer)):
                    self.exp_stat_sn = (pdu.stat_sn + 1) & 0xFFFFFFFF  # type: ignore[attr-defined]
                if isinstance(pdu, NopIn) and pdu.initiator_task_tag == 0xFFFFFFFF:
                    self.send(NopOut(immediate=True, target_transfer_tag=pdu.target_transfer_tag,
                                     cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn))  # fmt: skip
                    continue
                if isinstance(pdu, Reject):
                    self.rejects.append(pdu)
                return pdu
            data = self.sock.recv(1 << 20)
            if not data:
                raise TargetGone("the target closed the connection")
            self.framer.receive_data(data)

    def next_itt(self) -> int:
        self.itt += 1
        return self.itt

    # -- login and logout ---------------------------------------------------------------------
    def login(self, target: str | None, digests: bool = False, *, chap: Chap | None = None,
              tsih: int = 0, **keys: str) -> LoginResponse:  # fmt: skip
        """The security stage skipped (or CHAP with ``chap``), then the operational stage with
        the given keys, to full feature phase; ``tsih`` nonzero asks to join that session."""
        identity: dict[str, str] = {"InitiatorName": self.name}
        if target is None:
            identity["SessionType"] = "Discovery"
        else:
            identity |= {"TargetName": target, "SessionType": "Normal"}
        pairs: dict[str, str] = identity
        if chap is not None:
            response = self._chap(identity, chap, tsih)
            if response.status != 0:
                return response
            pairs = {}  # the identity went with the security stage
        digest = "CRC32C" if digests else "None"
        pairs |= {"HeaderDigest": digest, "DataDigest": digest, "InitialR2T": "Yes",
                  "ImmediateData": "No", "MaxRecvDataSegmentLength": str(MAX_RECV)}  # fmt: skip
        pairs |= keys
        response = self.login_step(OPERATIONAL, FULL_FEATURE, pairs, tsih)
        while response.status == 0 and not response.transit:  # the target offers keys
            answers = {k: v for k, v in parse_text(response.data) if k == "FirstBurstLength"}
            response = self.login_step(OPERATIONAL, FULL_FEATURE, answers, tsih)
        if response.status == 0:
            self.tsih = response.tsih
            self.framer.set_digests(digests, digests)
        return response

    def login_step(self, csg: int, nsg: int, pairs: dict[str, str], tsih: int) -> LoginResponse:
        if not self.itt:
            self.next_itt()  # one task tag for the whole login
        self.send(LoginRequest(transit=True, csg=csg, nsg=nsg, isid=self.isid, tsih=tsih,
                               cmd_sn=self.cmd_sn, initiator_task_tag=self.itt,
                               data=build_text(pairs.items())))  # fmt: skip
        response = self.receive()
        assert isinstance(response, LoginResponse)
        return response

    def _chap(self, identity: dict[str, str], chap: Chap, tsih: int) -> LoginResponse:
        """RFC 7143 12.1.3 from the initiator's side, MD5 computed here (RFC 1994), not with
        the target's code; a mutual proof the target sends back is checked."""
        first = self.login_step(SECURITY, OPERATIONAL, identity | {"AuthMethod": "CHAP"}, tsih)
        if first.status != 0:
            return first
        offered = dict(parse_text(self.login_step(SECURITY, OPERATIONAL, {"CHAP_A": "5"},
                                                   tsih).data))  # fmt: skip
        identifier, challenge = int(offered["CHAP_I"]), bytes.fromhex(offered["CHAP_C"][2:])
        keys = {"CHAP_N": chap.name, "CHAP_R": "0x" + _md5(identifier, chap.secret, challenge)}
        if chap.mutual is not None:
            keys |= {"CHAP_I": str(MUTUAL_IDENTIFIER), "CHAP_C": "0x" + MUTUAL_CHALLENGE.hex()}
        response = self.login_step(SECURITY, OPERATIONAL, keys, tsih)
        if response.status == 0 and chap.mutual is not None:
            name, secret = chap.mutual
            proof = _md5(MUTUAL_IDENTIFIER, secret, MUTUAL_CHALLENGE)
            assert dict(parse_text(response.data)) == {"CHAP_N": name, "CHAP_R": "0x" + proof}
        return response

    def logout(self) -> LogoutResponse:
        self.send(LogoutRequest(immediate=True, initiator_task_tag=self.next_itt(),
                                cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn))  # fmt: skip
        response = self.receive()
        assert isinstance(response, LogoutResponse)
        self.close()
        return response

    def close(self) -> None:
        """Drop the connection without a logout."""
        self.sock.close()

    @classmethod
    def close_all(cls) -> None:
        for ini in cls._open:
            ini.sock.close()
        cls._open.clear()

    # -- requests -------------------------------------------------------------------------------
    def command(self, cdb: bytes, *, lun: int = 0, read: int = 0, data: bytes = b"",
                expected: int | None = None) -> Reply:  # fmt: skip
        """One SCSI command: ``read`` bytes of data-in expected, or ``data`` to write."""
        itt = self.next_itt()
        length = expected if expected is not None else (read or len(data))
        self.send(ScsiCommand(final=True, read=bool(read), write=bool(data), lun=lun << 48,
                              initiator_task_tag=itt, expected_data_transfer_length=length,
                              cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn,
                              cdb=cdb.ljust(16, b"\0")))  # fmt: skip
        self.cmd_sn += 1
        data_in = bytearray()
        while True:
            pdu = self.receive()
            if isinstance(pdu, ReadyToTransfer):
                start = pdu.buffer_offset
                chunk = data[start : start + pdu.desired_data_transfer_length]
                self.send(ScsiDataOut(final=True, lun=lun << 48, initiator_task_tag=itt,
                                      target_transfer_tag=pdu.target_transfer_tag,
                                      exp_stat_sn=self.exp_stat_sn, buffer_offset=start,
                                      data=chunk))  # fmt: skip
            elif isinstance(pdu, ScsiDataIn):
                data_in += pdu.data
                if pdu.status_present:
                    residual = (pdu.residual_overflow, pdu.residual_underflow, pdu.residual_count)
                    return Reply(pdu.status, bytes(data_in), residual=residual)
            elif isinstance(pdu, ScsiResponse):
                residual = (pdu.residual_overflow, pdu.residual_underflow, pdu.residual_count)
                return Reply(pdu.status, bytes(data_in), pdu.sense, residual)
            else:
                raise AssertionError(f"unexpected {pdu!r} for a SCSI command")

    def task_management(self, function: int, *, lun: int = 0, referenced: int = 0xFFFFFFFF) -> int:
        self.send(TaskManagementFunctionRequest(immediate=True, function=function, lun=lun << 48,
                                                initiator_task_tag=self.next_itt(),
                                                referenced_task_tag=referenced,
                                                cmd_sn=self.cmd_sn,
                                                exp_stat_sn=self.exp_stat_sn))  # fmt: skip
        response = self.receive()
        assert isinstance(response, TaskManagementFunctionResponse)
        return response.response

    def send_targets(self) -> list[tuple[str, str]]:
        self.send(TextRequest(final=True, initiator_task_tag=self.next_itt(),
                              target_transfer_tag=0xFFFFFFFF, cmd_sn=self.cmd_sn,
                              exp_stat_sn=self.exp_stat_sn, data=b"SendTargets=All\0"))  # fmt: skip
        self.cmd_sn += 1
        response = self.receive()
        assert isinstance(response, TextResponse)
        return list(parse_text(response.data))


def connect(address: tuple[str, int], name: str, target: str, **kwargs: Any) -> Initiator:
    """A logged-in session (the login must succeed)."""
    isid = kwargs.pop("isid", 0x400001)
    initiator = Initiator(address, name, isid)
    response = initiator.login(target, **kwargs)
    assert response.status == 0, f"login failed: {response.status:#06x}"
    return initiator


def until_good(ini: Initiator, lun: int = 0) -> list[tuple[int, int, int] | None]:
    """TEST UNIT READY until GOOD: the unit attentions reported on the way."""
    seen = []
    for _ in range(8):
        reply = ini.command(bytes(6), lun=lun)  # TEST UNIT READY
        if reply.status == 0:
            return seen
        seen.append(reply.key_asc_ascq)
    raise AssertionError(f"no GOOD after {seen}")
