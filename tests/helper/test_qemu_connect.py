"""Real QEMU as the helper's client: its ``pr-manager-helper`` object connects and handshakes.

QEMU connects to the helper when the object is created and refuses to start if the handshake
fails, so a QEMU that starts and whose QMP ``query-pr-managers`` says ``connected: true`` proves
the helper speaks the handshake exactly as QEMU expects. ``object-add`` of a second manager
then does it again at run time, and QEMU reports it with ``PR_MANAGER_STATUS_CHANGED``.

Both helpers must pass: ours (``scsi-pr-helper --backend sim``, no root needed) and the C
``qemu-pr-helper`` from Debian (root only: it drops privileges to CAP_SYS_RAWIO at start).
Without ``qemu-system-x86_64`` (or root, for the C helper) the test skips with the reason on a
developer machine and fails with CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.helper.executable import HelperNotInstalled, helper_executable
from scsi_pr.rig.processes import NotListening, stop, wait_listening
from scsi_pr.rig.qmp import Qmp

QEMU = "qemu-system-x86_64"
START_TIMEOUT = 30.0


def _ours(sock: Path, state: Path) -> list[str]:
    try:
        exe = helper_executable()
    except HelperNotInstalled as e:
        unavailable(str(e))
    return [exe, "-k", str(sock), "--backend", "sim", "--state-dir", str(state)]


def _c_helper(sock: Path, state: Path) -> list[str]:
    exe = shutil.which("qemu-pr-helper")
    if exe is None:
        unavailable("qemu-pr-helper not installed (apt-get install qemu-system-common)")
    if os.geteuid() != 0:
        unavailable("the C qemu-pr-helper needs root (it keeps only CAP_SYS_RAWIO)")
    return [str(exe), "-k", str(sock)]


HELPERS = {"scsi-pr-helper": _ours, "qemu-pr-helper": _c_helper}


def _wait_connectable(path: Path, proc: subprocess.Popen[bytes]) -> None:
    def output() -> str:
        return proc.stdout.read().decode(errors="replace") if proc.stdout else ""

    try:
        wait_listening(proc, path, START_TIMEOUT, output=output)
    except NotListening as e:
        pytest.fail(str(e))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop(proc)


@pytest.fixture(params=list(HELPERS))
def helper_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A running helper (ours or the C one) listening on a fresh socket."""
    if shutil.which(QEMU) is None:
        unavailable(f"{QEMU} not installed (apt-get install qemu-system-x86)")
    sock = tmp_path / "pr-helper.sock"
    state = tmp_path / "state"
    state.mkdir()
    argv = HELPERS[request.param](sock, state)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_connectable(sock, proc)
        yield sock
        assert proc.poll() is None, f"helper died while QEMU was connected: {proc.returncode}"
    finally:
        _stop(proc)


@pytest.fixture
def qemu(helper_socket: Path, tmp_path: Path) -> Iterator[Qmp]:
    """QEMU with no machine at all, one pr-manager-helper on the helper's socket, and QMP."""
    qmp_path = tmp_path / "qmp.sock"
    proc = subprocess.Popen(
        [
            QEMU, "-machine", "none", "-nodefaults", "-display", "none",
            "-object", f"pr-manager-helper,id=pr0,path={helper_socket}",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not qmp_path.exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"QEMU refused to start (handshake failed?): {out}")
            if time.monotonic() > deadline:
                pytest.fail(f"QEMU did not open its QMP socket within {START_TIMEOUT}s")
            time.sleep(0.05)
        qmp = Qmp(qmp_path, timeout=START_TIMEOUT)
        yield qmp
        qmp.execute("quit")
        qmp.close()
        proc.wait(START_TIMEOUT)
    finally:
        _stop(proc)


def test_qemu_connects_at_startup(qemu: Qmp) -> None:
    assert qemu.execute("query-pr-managers") == [{"id": "pr0", "connected": True}]


def test_object_add_connects_again_and_reports_it(qemu: Qmp, helper_socket: Path) -> None:
    qemu.execute("object-add", **{"qom-type": "pr-manager-helper", "id": "pr1",
                                  "path": str(helper_socket)})  # fmt: skip
    managers = sorted(qemu.execute("query-pr-managers"), key=lambda m: m["id"])
    assert managers == [{"id": "pr0", "connected": True}, {"id": "pr1", "connected": True}]
    events = [e for e in qemu.events if e["event"] == "PR_MANAGER_STATUS_CHANGED"]
    assert {"id": "pr1", "connected": True} in [e["data"] for e in events]
    qemu.execute("object-del", id="pr1")
    assert qemu.execute("query-pr-managers") == [{"id": "pr0", "connected": True}]
