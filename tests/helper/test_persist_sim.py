"""``scsi-pr persist`` driving the device model in-process: what the commands do to the LU,
what is opened how, and the behaviours that differ from sg_persist by design."""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scsi_pr.helper.options import DEFAULT_SOCKET
from scsi_pr.helper.persist import main
from scsi_pr.helper.persist.cli import execute
from scsi_pr.helper.persist.command import Response, Transport
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.sense import sense_text
from scsi_pr.helper.persist.transport import HelperTransport, socket_path
from scsi_pr.sim.constants import Opcode, ReservationType
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus

ROOT = Path(__file__).resolve().parents[2]
A = ITNexus.named("naa.5001405000000001", 1)
B = ITNexus.named("naa.5001405000000002", 2)


@dataclass
class SimTransport(Transport):
    """The model behind the Transport interface, as the helper's sim backend would serve it."""

    lu: LogicalUnit
    nexus: ITNexus
    opcodes: list[int] = field(default_factory=list)
    access_modes: list[int] = field(default_factory=list)

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        self.opcodes.append(cdb[0])
        result = self.lu.execute(self.nexus, cdb, data)
        return Response(int(result.status), result.sense.ljust(96, b"\0"), result.data)


@pytest.fixture
def lu() -> LogicalUnit:
    unit = LogicalUnit(target_ports=(1, 2))
    for nexus in (A, B):
        unit.execute(nexus, bytes(6))  # consume the power-on unit attention
    return unit


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(4096))
    return str(path)


def run(lu: LogicalUnit, nexus: ITNexus, line: str, image: str,
        env: dict[str, str] | None = None) -> tuple[str, str, int, SimTransport]:  # fmt: skip
    transport = SimTransport(lu, nexus)

    def factory(op: Options, fd: int) -> Transport:
        transport.access_modes.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
        return transport

    outcome = execute([*line.split(), image], factory, env=env or {})
    return "".join(outcome.stdout), "".join(outcome.stderr), outcome.code, transport


def test_fence_scsi_sequence_changes_the_lu(lu: LogicalUnit, image: str) -> None:
    """The exact command lines fence_scsi builds, parsed the way fence_scsi parses them."""
    assert run(lu, A, "-n -o -I -S 1a2b -d", image)[2] == 0
    assert run(lu, B, "-n -o -I -S 3c4d -d", image)[2] == 0
    assert run(lu, A, "-n -o -R -T 5 -K 1a2b -d", image)[2] == 0
    out, _, code, _ = run(lu, B, "-n -i -k -d", image)
    keys = [m.group(1) for line in out.split("\n") if (m := re.search(r"\s+0x(\S+)\s*", line))]
    assert code == 0 and keys == ["1a2b", "3c4d"]
    out, _, code, _ = run(lu, B, "-n -i -r -d", image)
    assert re.search(r"\s+key=0x(\S+)\s+", out, re.IGNORECASE).group(1) == "1a2b"  # type: ignore[union-attr]
    # node B fences node A
    assert run(lu, B, "-n -o -A -T 5 -K 3c4d -S 1a2b -d", image)[2] == 0
    assert {r.key for r in lu.pr.registrations.values()} == {0x3C4D}
    assert lu.pr.reservation is not None and lu.pr.is_holder(B)
    assert lu.pr.reservation.type == ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    # A learns it was preempted, and cannot come back with its old key
    assert run(lu, A, "-n -i -k -d", image)[2] == Exit.UNIT_ATTENTION
    _, err, code, _ = run(lu, A, "-n -o -R -T 5 -K 1a2b -d", image)
    assert code == Exit.RES_CONFLICT == 24
    assert err.endswith("sg_persist failed: Reservation conflict\n")


def test_illegal_request_exit_code(lu: LogicalUnit, image: str) -> None:
    assert run(lu, A, "-n -o -G -S 5", image)[2] == 0
    _, err, code, _ = run(lu, A, "-n -o -R -T 2 -K 5", image)  # obsolete type 2
    assert code == Exit.ILLEGAL_REQ == 5
    assert "PR out (Reserve): bad field in cdb or parameter list" in err


def test_without_no_inquiry_only_pr_commands_are_sent(lu: LogicalUnit, image: str) -> None:
    """The helper forwards PR IN/OUT only; without -n we print what -n prints."""
    run(lu, A, "-n -o -G -S 77", image)
    with_n = run(lu, A, "-n -k", image)
    without = run(lu, A, "-k", image)
    assert without[:3] == with_n[:3]
    assert "0x77" in without[0]
    assert set(without[3].opcodes) == {Opcode.PERSISTENT_RESERVE_IN}


def test_open_modes(lu: LogicalUnit, image: str) -> None:
    assert run(lu, A, "-n -k", image)[3].access_modes == [os.O_RDWR]
    assert run(lu, A, "-n -k -y", image)[3].access_modes == [os.O_RDONLY]
    assert run(lu, A, "-n -k -yy", image)[3].access_modes == [os.O_RDWR]
    ro_env = {"SG_PERSIST_IN_RDONLY": "1"}
    assert run(lu, A, "-n -k", image, ro_env)[3].access_modes == [os.O_RDONLY]
    assert run(lu, A, "-n -o -G -S 1", image, ro_env)[3].access_modes == [os.O_RDWR]


def test_short_allocation_decodes_zeros_past_the_data(lu: LogicalUnit, image: str) -> None:
    run(lu, A, "-n -o -G -S 1122334455667788", image)
    run(lu, B, "-n -o -G -S 99", image)
    out, _, code, _ = run(lu, A, "-n -k -l c", image)  # 12 bytes: header + half a key
    assert code == 0
    assert out == ("  PR generation=0x2, 2 registered reservation keys follow:\n"
                   "    0x1122334400000000\n    0x0\n")  # fmt: skip


@dataclass
class FailingTransport(Transport):
    error: OSError
    closed: int = 0

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        raise self.error

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize(
    ("error", "code", "stderr"),
    [
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "PR helper at /s: Connection refused"),
            50,
            "Persistent reservation in: pass-through os error: "
            "PR helper at /s: Connection refused\n"
            "PR in (Read keys): An OS error occurred\nsg_persist failed: An OS error occurred\n",
        ),
        (
            FileNotFoundError(errno.ENOENT, "PR helper at /s: No such file or directory"),
            52,
            "Persistent reservation in: pass-through os error: PR helper at /s: No such file or "
            "directory\nPR in (Read keys): No such file or directory\n"
            "sg_persist failed: No such file or directory\n",
        ),
        (
            OSError(errno.ENXIO, "gone"),
            2,
            "PR in (Read keys): Device not ready\nsg_persist failed: Device not ready\n",
        ),
    ],
)
def test_transport_failures(image: str, error: OSError, code: int, stderr: str) -> None:
    outcome = execute(["-n", "-k", image], lambda op, fd: FailingTransport(error), env={})
    assert (outcome.code, "".join(outcome.stderr)) == (code, stderr)


def test_transport_closed_once_whatever_happened(lu: LogicalUnit, image: str) -> None:
    failing = FailingTransport(OSError(errno.EIO, "x"))
    assert execute(["-n", "-k", image], lambda op, fd: failing, env={}).code == 50 + errno.EIO
    assert failing.closed == 1
    closed: list[bool] = []

    class Closing(SimTransport):
        def close(self) -> None:
            closed.append(True)

    outcome = execute(["-n", "-o", "-G", "-S", "5", image], lambda op, fd: Closing(lu, A), env={})
    assert outcome.code == 0
    assert closed == [True]


def test_helper_transport_reports_an_absent_helper_and_closes(tmp_path: Path) -> None:
    transport = HelperTransport(str(tmp_path / "nobody.sock"), 0)
    with pytest.raises(OSError) as caught:
        transport.execute(bytes([Opcode.PERSISTENT_RESERVE_IN]) + bytes(6) + b"\x00\x20\x00")
    assert caught.value.errno == errno.ENOENT
    assert str(tmp_path / "nobody.sock") in str(caught.value)
    transport.close()  # the client it made is closed; closing twice is harmless
    transport.close()


def test_short_descriptor_sense_is_decoded_as_far_as_it_goes() -> None:
    """A transport may return sense shorter than the helper's 96 bytes; SDAT_OVFL (byte 4)
    is then absent, not an error."""
    assert sense_text(bytes([0x72, 0x06]), raw=False) == (
        "Descriptor format, current; Sense key: Unit Attention\n"
        "Additional sense: No additional sense information\n"
    )


def test_socket_choice() -> None:
    assert socket_path(Options(socket="/a.sock"), {"SCSI_PR_HELPER_SOCKET": "/b.sock"}) == "/a.sock"
    assert socket_path(Options(), {"SCSI_PR_HELPER_SOCKET": "/b.sock"}) == "/b.sock"
    assert socket_path(Options(), {}) == DEFAULT_SOCKET == "/var/run/qemu-pr-helper.sock"
    seen: list[str | None] = []

    def factory(op: Options, fd: int) -> Transport:
        seen.append(op.socket)
        return FailingTransport(OSError(errno.EIO, "x"))

    execute(["--socket", "/c.sock", "-n", "-k", os.devnull], factory, env={})
    execute(["-n", "--socket=/d.sock", "-k", os.devnull], factory, env={})
    assert seen == ["/c.sock", "/d.sock"]


def test_main_writes_both_streams(lu: LogicalUnit, image: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["-n", "-o", "-G", "-S", "5", "-v", image],
                lambda op, fd: SimTransport(lu, A), stdout=out, stderr=err)  # fmt: skip
    assert code == 0 and out.getvalue() == ""
    assert err.getvalue().endswith("PR out: command (Register) successful\n")


def test_umbrella_command_and_wrapper_script(tmp_path: Path) -> None:
    from scsi_pr.rig.cli import main as scsi_pr

    assert scsi_pr(["persist", "-V"]) == 0
    wrapper = ROOT / "scripts" / "sg_persist-via-helper"
    done = subprocess.run([str(wrapper), "-V"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "version: 0.67 20190913\n")
    missing = str(tmp_path / "missing")
    done = subprocess.run([str(wrapper), "-n", "-k", "-d", missing], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 52
    assert (
        done.stderr == f"sg_persist: error opening file {missing} (rw): No such file or directory\n"
    )
