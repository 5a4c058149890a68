"""Fuzzing a running target: garbage, truncated logins, malformed PDUs and wrong digests on
connections of their own, while a well-behaved session (CRC32C digests, on its own LU) keeps
writing and reading. It must see no error at all, and the target must be alive afterwards with
no connection left behind.

Task management requests are left out of the random PDUs: a TARGET COLD RESET is a valid
request that ends every session (RFC 7143 11.5.1), not an attack the good session should
survive.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from initiator import TIMEOUT, Initiator, connect
from live import TARGET, LiveTarget
from strategies import PDU_TYPES, pdus

from scsi_pr.sim import cdb
from scsi_pr.target.proto import (
    LoginRequest,
    NopOut,
    Pdu,
    ScsiCommand,
    TaskManagementFunctionRequest,
    encode_pdu,
)
from scsi_pr.target.proto.text import build_text

GOOD_LUN = 1
ATTACKER = "iqn.2024-01.test:attacker"
# each example runs against a live target over TCP: slow by design, not by a bad strategy
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAFE_TYPES = [t for t in PDU_TYPES if t is not TaskManagementFunctionRequest]


class GoodSession:
    """The bystander: writes a fresh pattern and reads it back after every attack."""

    def __init__(self, target: LiveTarget) -> None:
        self.ini = connect(target.address, "iqn.2024-01.test:good", TARGET, digests=True)
        self.round = 0
        for _ in range(4):  # unit attentions of a fresh LU, if any
            if self.ini.command(cdb.test_unit_ready(), lun=GOOD_LUN).status == 0:
                break

    def check(self) -> None:
        self.round += 1
        block = bytes([self.round & 0xFF]) * 512 * 3
        lba = self.round % 64
        write = self.ini.command(cdb.write_10(lba, 3), lun=GOOD_LUN, data=block)
        read = self.ini.command(cdb.read_10(lba, 3), lun=GOOD_LUN, read=len(block))
        assert (write.status, read.status, read.data) == (0, 0, block)
        assert self.ini.rejects == []


def attack(target: LiveTarget, wire: bytes, *, login: bool = False, digests: bool = False) -> None:
    """Send ``wire`` on a new connection (after a login if asked), end the stream, and wait
    until the target has closed its side."""
    attacker = Initiator(target.address, ATTACKER, isid=0x990000000001)
    if login:
        assert attacker.login(TARGET, digests=digests).status == 0
    sock = attacker.sock
    try:
        sock.sendall(wire)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + TIMEOUT
        while sock.recv(65536):  # whatever the target answers, until it closes
            assert time.monotonic() < deadline, "the target kept a dead connection open"
    except (ConnectionResetError, BrokenPipeError):
        pass  # the target cut the connection first
    finally:
        sock.close()


def login_request(name: str = ATTACKER) -> bytes:
    keys = {"InitiatorName": name, "TargetName": TARGET, "SessionType": "Normal"}
    return encode_pdu(LoginRequest(transit=True, csg=1, nsg=3, isid=0x990000000002,
                                   data=build_text(keys.items())))  # fmt: skip


def test_attacks_leave_the_target_and_a_good_session_unharmed(tmp_path: Path) -> None:
    with LiveTarget(tmp_path, luns=2, login_timeout=5.0) as target:
        good = GoodSession(target)

        @FUZZ
        @given(st.binary(min_size=1, max_size=400))
        def garbage_before_login(wire: bytes) -> None:
            attack(target, wire)
            good.check()

        @FUZZ
        @given(st.data())
        def truncated_login(data: st.DataObject) -> None:
            wire = login_request()
            attack(target, wire[: data.draw(st.integers(1, len(wire) - 1))])
            good.check()

        @FUZZ
        @given(st.lists(st.sampled_from(SAFE_TYPES).flatmap(pdus), min_size=1, max_size=5))
        def malformed_pdus_after_login(sequence: list[Pdu]) -> None:
            attack(target, b"".join(encode_pdu(p) for p in sequence), login=True)
            good.check()

        @FUZZ
        @given(st.integers(0, 47), st.booleans())
        def wrong_digests(flip: int, in_data: bool) -> None:
            command = ScsiCommand(final=True, write=True, initiator_task_tag=1, cmd_sn=1,
                                  expected_data_transfer_length=512,
                                  cdb=cdb.write_10(0, 1).ljust(16, b"\0"))  # fmt: skip
            nop = NopOut(initiator_task_tag=2, cmd_sn=2, data=b"ping" * 8)
            wire = bytearray(encode_pdu(command, header_digest=True, data_digest=True))
            ping = bytearray(encode_pdu(nop, header_digest=True, data_digest=True))
            spot = 48 + 4 + flip % len(nop.data) if in_data else 48 + flip % 4  # digest bytes
            ping[spot] ^= 0xFF
            attack(target, bytes(wire + ping), login=True, digests=True)
            good.check()

        garbage_before_login()
        truncated_login()
        malformed_pdus_after_login()
        wrong_digests()

        deadline = time.monotonic() + TIMEOUT
        while target.connections() > 1:
            assert time.monotonic() < deadline, "connections left behind"
            time.sleep(0.05)
        good.check()
        assert good.round > 100  # every attack ran, each followed by a check
        fresh = connect(target.address, "iqn.2024-01.test:after", TARGET)
        assert fresh.logout().response == 0
