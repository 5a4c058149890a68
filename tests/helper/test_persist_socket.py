"""``scsi-pr persist`` over real helper sockets, run as fence_scsi runs it: through
``scripts/sg_persist-via-helper`` with only sg_persist's options and the socket in the
environment.

* Our ``scsi-pr-helper --backend sim``: two helper processes with different initiator names
  share one simulated LU (the image file), as two cluster nodes share a LUN.
* The C ``qemu-pr-helper`` (root only: it keeps CAP_SYS_RAWIO): proves the client side speaks
  its protocol. It runs SG_IO on the regular file we pass, which fails, so its answers are its
  own fixed mappings (0B/00/06 for a failed ioctl, 05/20/00 for PR OUT on a read-only fd).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.helper.executable import HelperNotInstalled, helper_executable
from scsi_pr.rig.processes import NotListening, stop, wait_listening

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "scripts" / "sg_persist-via-helper"
START_TIMEOUT = 30.0
NODE1, NODE2 = "naa.5001405000000001", "naa.5001405000000002"


def _start(cmd: list[str], sock: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, sock, START_TIMEOUT, name=cmd[0], output=lambda: _output(proc))
    except NotListening as e:
        proc.kill()
        pytest.fail(str(e))
    return proc


def _output(proc: subprocess.Popen[bytes]) -> str:
    return proc.stdout.read().decode(errors="replace") if proc.stdout else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop(proc)


def persist(sock: Path | None, line: str, *, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    environ = {**os.environ, **(env or {})}
    if sock is not None:
        environ["SCSI_PR_HELPER_SOCKET"] = str(sock)
    return subprocess.run([str(WRAPPER), *line.split()], capture_output=True, text=True,
                          env=environ, timeout=60, check=False)  # fmt: skip


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    try:
        exe = helper_executable()
    except HelperNotInstalled as e:
        unavailable(str(e))
    state = tmp_path / "state"
    state.mkdir()
    image = tmp_path / "shared-lu.img"
    image.write_bytes(bytes(1 << 20))
    socks = (tmp_path / "node1.sock", tmp_path / "node2.sock")
    procs = []
    for name, sock in zip((NODE1, NODE2), socks, strict=True):
        cmd = [str(exe), "--backend", "sim", "--initiator", name, "--state-dir", str(state)]
        procs.append(_start([*cmd, "-k", str(sock)], sock))
    try:
        yield image, socks[0], socks[1]
    finally:
        for proc in procs:
            _stop(proc)


def test_fence_scsi_sequence_between_two_nodes(two_nodes: tuple[Path, Path, Path]) -> None:
    image, node1, node2 = two_nodes
    dev = f"-d {image}"
    # clear the power-on unit attention each new I_T nexus sees first
    for sock in (node1, node2):
        assert persist(sock, f"-n -i -k {dev}").returncode in (0, 6)
    assert persist(node1, f"-n -o -I -S 1a2b {dev}").returncode == 0
    assert persist(node2, f"-n -o -I -S 3c4d {dev}").returncode == 0
    assert persist(node1, f"-n -o -R -T 5 -K 1a2b {dev}").returncode == 0
    keys = persist(node2, f"-n -i -k {dev}")
    assert keys.returncode == 0, keys.stderr
    # fence_scsi's parsing: one regex per line
    lines = keys.stdout.split("\n")
    assert [m.group(1) for line in lines if (m := re.search(r"\s+0x(\S+)\s*", line))] == [
        "1a2b",
        "3c4d",
    ]
    res = persist(node2, f"-n -i -r {dev}")
    assert re.search(r"\s+key=0x(\S+)\s+", res.stdout, re.IGNORECASE).group(1) == "1a2b"  # type: ignore[union-attr]
    # node2 reserves over node1's reservation: RESERVATION CONFLICT, exit 24
    conflict = persist(node2, f"-n -o -R -T 5 -K 3c4d {dev}")
    assert conflict.returncode == 24
    assert conflict.stderr.endswith("sg_persist failed: Reservation conflict\n")
    # node2 fences node1, which then sees the preemption and can no longer reserve
    assert persist(node2, f"-n -o -A -T 5 -K 3c4d -S 1a2b {dev}").returncode == 0
    ua = persist(node1, f"-n -i -k {dev}")
    assert ua.returncode == 6
    assert "Registrations preempted" in ua.stderr
    keys = persist(node1, f"-n -i -k {dev}")
    assert (keys.returncode, re.findall(r"    0x(\S+)", keys.stdout)) == (0, ["3c4d"])
    assert persist(node1, f"-n -o -R -T 5 -K 1a2b {dev}").returncode == 24


def test_socket_option_and_unreachable_helper(
    two_nodes: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    image, node1, _ = two_nodes
    done = persist(None, f"--socket {node1} -n -c {image}")
    assert done.returncode == 0 and "Report capabilities response:" in done.stdout
    missing = tmp_path / "nobody-listens.sock"
    done = persist(missing, f"-n -k {image}")
    assert done.returncode == 52  # 50 + ENOENT, as sg3_utils reports OS errors
    assert done.stderr.startswith(
        f"Persistent reservation in: pass-through os error: PR helper at {missing}: "
    )


def test_against_the_c_qemu_pr_helper(tmp_path: Path) -> None:
    exe = shutil.which("qemu-pr-helper")
    if exe is None:
        unavailable("qemu-pr-helper not installed (apt-get install qemu-system-common)")
    if os.geteuid() != 0:
        unavailable("the C qemu-pr-helper needs root (it keeps only CAP_SYS_RAWIO)")
    sock = tmp_path / "c-helper.sock"
    image = tmp_path / "not-a-disk.img"
    image.write_bytes(bytes(4096))
    proc = _start([str(exe), "-k", str(sock)], sock)
    try:
        done = persist(sock, f"-n -k -v {image}")
        assert done.returncode == 11  # SG_IO on a regular file fails: 0B/00/06
        assert done.stderr == (
            "    Persistent reservation in cdb: [5e 00 00 00 00 00 00 20 00 00]\n"
            "Persistent reservation in:\n"
            "Fixed format, current; Sense key: Aborted Command\n"
            "Additional sense: I/O process terminated\n"
            "PR in (Read keys): Aborted command, type: sense key, other than protection "
            "related (asc=0x10)\n"
        )
        done = persist(sock, f"-n -o -G -S 1 -y {image}")  # PR OUT on an O_RDONLY fd
        assert done.returncode == 9
        assert done.stderr == ("PR out (Register): command not supported\n"
                               "sg_persist failed: Illegal request, Invalid opcode\n")  # fmt: skip
    finally:
        _stop(proc)
