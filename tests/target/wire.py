"""A sans-IO initiator for the target's protocol tests: it encodes requests with the codec,
feeds the bytes to a ``TargetConnection`` and decodes what comes back."""

from __future__ import annotations

from itertools import count
from typing import Any

from scsi_pr.target.proto import (
    CLOSED,
    NEED_DATA,
    Framer,
    LoginRequest,
    LoginResponse,
    NopIn,
    NopOut,
    Pdu,
    Role,
    ScsiCommand,
    ScsiDataOut,
    TaskManagementFunction,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
    encode_pdu,
)
from scsi_pr.target.proto.connection import ConnectionSettings, ConnectionState, TargetConnection
from scsi_pr.target.proto.discovery import Portal
from scsi_pr.target.proto.login import LoginSettings, TargetNode
from scsi_pr.target.proto.text import build_text

TARGET, INITIATOR = "iqn.2024-01.test:disk", "iqn.2024-01.test:host"
SETTINGS = ConnectionSettings(
    login=LoginSettings(targets=(TargetNode(TARGET),), command_window=8),
    portals=(Portal("192.0.2.1"),),
    nop_interval=10,
    nop_timeout=5,
)
READ_10 = bytes.fromhex("28000000000000000800") + bytes(6)
WRITE_10 = bytes.fromhex("2a000000000000000800") + bytes(6)


def abort_task(ini: Initiator, rtt: int, ref_cmd_sn: int, *, answered: bool = True) -> Any:
    """An immediate ABORT TASK (ITT 90 + ``rtt``), as initiators send one; the target's
    answer when it gives one at once."""
    out = ini.send(TaskManagementFunctionRequest(
        immediate=True, function=TaskManagementFunction.ABORT_TASK, initiator_task_tag=90 + rtt,
        referenced_task_tag=rtt, ref_cmd_sn=ref_cmd_sn, cmd_sn=ini.cmd_sn))  # fmt: skip
    if not answered:
        assert out == []
        return None
    (response,) = out
    assert isinstance(response, TaskManagementFunctionResponse)
    assert response.initiator_task_tag == 90 + rtt
    return response


class Initiator:
    """The initiator's side: encodes requests, decodes whatever the target sends back."""

    def __init__(
        self,
        digests: bool = False,
        *,
        settings: ConnectionSettings = SETTINGS,
        target: dict[str, Any] | None = None,
        **keys: str,
    ) -> None:
        """``keys``: login keys to send; ``settings`` and ``target`` (further arguments of
        ``TargetConnection``: ``now``, ``refusal``...) make the target's side."""
        counter = count()
        source = lambda n: bytes(next(counter) for _ in range(n))  # noqa: E731
        options: dict[str, Any] = {"tsih": 5, "random_bytes": source, **(target or {})}
        self.conn = TargetConnection(settings, **options)
        self.framer = Framer(Role.INITIATOR)
        self.digests = digests
        self.cmd_sn = 100
        self.events: list[Any] = []
        self.keys = keys

    def send_bytes(self, data: bytes) -> list[Pdu]:
        self.conn.receive_data(data)
        return self.drain()

    def tick(self, now: float) -> list[Pdu]:
        self.conn.tick(now)
        return self.drain()

    def drain(self) -> list[Pdu]:
        """Collect the target's events, and return the PDUs it queued."""
        while (event := self.conn.next_event()) not in (NEED_DATA, CLOSED):
            self.events.append(event)
        return self.pull()

    def pull(self) -> list[Pdu]:
        """The PDUs the target has queued."""
        out = self.conn.data_to_send()
        if out:
            self.framer.receive_data(out)
        pdus = []
        while isinstance(pdu := self.framer.next_pdu(), Pdu):
            pdus.append(pdu)
        return pdus

    def send(self, pdu: Pdu) -> list[Pdu]:
        on = self.digests and self.conn.state is ConnectionState.FULL_FEATURE_PHASE
        return self.send_bytes(encode_pdu(pdu, header_digest=on, data_digest=on))

    def login(self, session_type: str = "Normal") -> LoginResponse:
        keys = {"InitiatorName": INITIATOR, "SessionType": session_type, **self.keys}
        if session_type == "Normal":
            keys["TargetName"] = TARGET
        if self.digests:
            keys |= {"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"}
        (response,) = self.send(LoginRequest(transit=True, csg=1, nsg=3, isid=0x400001, cmd_sn=100,
                                             data=build_text(keys.items())))  # fmt: skip
        assert isinstance(response, LoginResponse) and response.status == 0
        if self.digests:
            self.framer.set_digests(True, True)
        return response

    def command(
        self, itt: int, cdb: bytes, length: int, *, read: bool = False, write: bool = False,
        data: bytes = b"", final: bool = True, immediate: bool = False,
    ) -> list[Pdu]:  # fmt: skip
        pdu = ScsiCommand(immediate=immediate, final=final, read=read, write=write,
                          initiator_task_tag=itt, expected_data_transfer_length=length,
                          cmd_sn=self.cmd_sn, cdb=cdb, data=data)  # fmt: skip
        if not immediate:
            self.cmd_sn += 1
        return self.send(pdu)

    def last(self, kind: type) -> Any:
        return next(e for e in reversed(self.events) if isinstance(e, kind))


# -- the steps the full feature phase tests take (test_full_feature*.py) ------------------------
def pairs(data: bytes) -> list[tuple[str, str]]:
    """key=value pairs as a SendTargets answer lists them (a key may repeat)."""
    return [tuple(p.split("=", 1)) for p in data.decode().split("\0") if p]  # type: ignore[misc]


def logged_in(**keys: str) -> Initiator:
    ini = Initiator(**keys)
    ini.login()
    return ini


def write(ini: Initiator, itt: int, length: int, *, lun: int = 0) -> list:
    pdu = ScsiCommand(write=True, lun=lun, initiator_task_tag=itt, cmd_sn=ini.cmd_sn,
                      expected_data_transfer_length=length, cdb=WRITE_10)  # fmt: skip
    ini.cmd_sn += 1
    return ini.send(pdu)


def send_data(ini: Initiator, itt: int, r2ts: list, length: int, lun: int = 0) -> None:
    """All of a write's data, for the one R2T in ``r2ts``."""
    (r2t,) = r2ts
    ini.send(ScsiDataOut(final=True, lun=lun, initiator_task_tag=itt, data=b"w" * length,
                         target_transfer_tag=r2t.target_transfer_tag))  # fmt: skip


def nop(ini: Initiator, itt: int = 50) -> NopIn:
    (nop_in,) = ini.send(NopOut(immediate=True, initiator_task_tag=itt, cmd_sn=ini.cmd_sn))
    assert isinstance(nop_in, NopIn)
    return nop_in
