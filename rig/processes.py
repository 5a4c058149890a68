"""Helper processes seen from outside: start one, wait until it listens, stop it.

The backends, the benchmark, the guest end-to-end run and the tests all start
``scsi-pr-helper`` (or the C helper) and must know when its Unix socket accepts connections;
QEMU refuses to start against a socket that does not, so "listening" means a connect()
succeeded, not that the file exists. (The connection makes the helper send its handshake to a
client that leaves at once; both helpers take that in stride.)

Our own daemons say when they are ready, as a ``Type=notify`` systemd service does
(``scsi_pr.helper.systemd``): ``NotifySocket`` is the service manager's end of that, so the
rig's helpers (``rig.helper_processes``) and ``start_target`` wait for ``READY=1`` and never
connect to probe, which the daemon would count as a client (a helper's ``--max-clients``, a
target's connections not logged in) and which a port someone else took would also answer.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from scsi_pr.helper.systemd import NOTIFY_ENV, notify_address
from scsi_pr.rig import guest_cpu
from scsi_pr.rig.errors import RigError

MAX_START = 900.0  # seconds: a process that keeps using CPU but never listens


class NotListening(RigError):
    """The process exited, or its socket did not accept a connection in time."""


def exit_on_sigterm() -> None:
    """Make SIGTERM a ``SystemExit(143)`` in this process's main thread, so that its ``finally``
    blocks run: they stop what it started in process groups of its own (a VM's QEMU, a watched
    ``iscsi-test-cu``), which a plain SIGTERM, ending Python at once, leaves running.
    ``scripts/vm-tier`` stops the work it started beside its VMs with SIGTERM: an orphaned
    ``iscsi-test-cu`` whose target was gone spun at 75 % of a core for 80 minutes here."""
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time ``pid`` has used (proc(5) fields 14 and 15); None once gone."""
    try:
        return guest_cpu.usage(pid).own
    except (OSError, ValueError, IndexError):
        return None


def unix_listening(sock: Path) -> bool:
    """Does a connect() to the Unix socket ``sock`` succeed?"""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


class NotifySocket:
    """A ``NOTIFY_SOCKET`` (sd_notify(3)) of our own, in the abstract namespace (no file, no
    path-length limit): ``env()`` for the process to start, ``ready()`` once it said
    ``READY=1``. One per started process; ``with`` closes it."""

    def __init__(self) -> None:
        self.name = f"@scsi-pr-notify-{os.getpid()}-{secrets.token_hex(6)}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(notify_address(self.name))
        self._sock.setblocking(False)
        #: every datagram received so far, in order
        self.messages: list[str] = []

    def env(self) -> dict[str, str]:
        """This process's environment, with ``NOTIFY_SOCKET`` naming this socket."""
        return {**os.environ, NOTIFY_ENV: self.name}

    def poll(self) -> list[str]:
        """``messages``, with what arrived since the last call."""
        while True:
            try:
                self.messages.append(self._sock.recv(4096).decode(errors="replace"))
            except BlockingIOError:
                return self.messages

    def ready(self) -> bool:
        """Has the process said ``READY=1`` (in any datagram so far)?"""
        return any("READY=1" in message.splitlines() for message in self.poll())

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on now (the kernel's pick), for a server
    started next."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    quiet_limit: float,
    *,
    name: str = "helper",
    what: str = "become ready",
    output: Callable[[], str] = lambda: "",
    interval: float = 0.02,
) -> None:
    """Return once ``ready()``; raise NotListening if ``proc`` exits first (with ``output()`` in
    the message) or makes no progress for ``quiet_limit`` seconds.

    Progress is CPU time: a starting interpreter that is only slow (a loaded machine, TCG) keeps
    using CPU while it imports, and a start that is stuck does not. A fixed wall-clock deadline
    failed the VM tier on a busy machine while the helper was still starting. ``MAX_START``
    bounds a process that spins without ever getting ready."""
    start = last_progress = time.monotonic()
    used = cpu_seconds(proc.pid) or 0.0
    while True:
        if proc.poll() is not None:
            raise NotListening(f"{name} exited with {proc.returncode}: {output()}")
        if ready():
            return
        now = time.monotonic()
        if (cpu := cpu_seconds(proc.pid)) is not None and cpu > used:
            used, last_progress = cpu, now
        if now - last_progress > quiet_limit:
            raise NotListening(
                f"{name} did not {what}: no progress (CPU time) for {quiet_limit:g}s"
            )
        if now - start > MAX_START:
            raise NotListening(f"{name} did not {what} in {MAX_START:g}s")
        time.sleep(interval)


def wait_listening(
    proc: subprocess.Popen[bytes],
    sock: Path,
    quiet_limit: float,
    *,
    name: str = "helper",
    output: Callable[[], str] = lambda: "",
    interval: float = 0.02,
) -> None:
    """``wait_ready`` for a connect() to the Unix socket ``sock``."""
    wait_ready(proc, lambda: unix_listening(sock), quiet_limit, name=name,
               what=f"listen on {sock}", output=output, interval=interval)  # fmt: skip


def spawn_ready(
    argv: list[str],
    log: Path,
    ready: Callable[[], bool],
    quiet_limit: float,
    *,
    name: str,
    what: str,
    new_session: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to ``log``; return it once ``ready()``. If it
    does not get there (``wait_ready``), it is stopped and NotListening says why, with the
    log's tail. ``new_session``: its own session, out of reach of our terminal's signals."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session, env=env
        )
    try:
        wait_ready(proc, ready, quiet_limit, name=name, what=what, output=lambda: log_tail(log))
    except NotListening:
        stop(proc)
        raise
    return proc


def spawn_notifying(
    argv: list[str],
    log: Path,
    quiet_limit: float,
    *,
    name: str,
    what: str = "say READY=1",
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """``spawn_ready`` for a daemon that speaks sd_notify (our helper and target): ready once
    it says ``READY=1`` on a ``NotifySocket`` of its own; no probing connect, which it would
    count as a client."""
    with NotifySocket() as notify:
        return spawn_ready(argv, log, notify.ready, quiet_limit, name=name, what=what,
                           new_session=new_session, env=notify.env())  # fmt: skip


def spawn_listening(
    argv: list[str], sock: Path, log: Path, quiet_limit: float, *, name: str = "helper"
) -> subprocess.Popen[bytes]:
    """``spawn_ready`` until a connect() to the Unix socket ``sock`` succeeds."""
    return spawn_ready(argv, log, lambda: unix_listening(sock), quiet_limit, name=name,
                       what=f"listen on {sock}")  # fmt: skip


def start_target(
    portal: tuple[str, int],
    iqn: str,
    state_dir: Path,
    size: str,
    log: Path,
    quiet_limit: float,
    *,
    extra: Sequence[str] = (),
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """``scsi-pr target serve`` (the model behind our iSCSI target) on ``portal`` with its LUs
    in ``state_dir``, returned once it accepts connections; ``extra``: more of its options.
    The one way the rig, the libiscsi runner and the iSCSI guests start it."""
    host, port = portal
    argv = [sys.executable, "-m", "scsi_pr", "target", "serve", "--iqn", iqn, "--portal",
            f"{host}:{port}", "--state-dir", str(state_dir), "--size", size, *extra]  # fmt: skip
    what = f"say it listens on {host}:{port}"
    return spawn_notifying(
        argv, log, quiet_limit, name="scsi-pr target serve", what=what, new_session=new_session
    )


def log_tail(log: Path, size: int = 2000) -> str:
    """The end of a process's log, for an error message."""
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError as e:
        return f"(no log: {e})"


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL unless it has exited, then reap it; its exit status. For a process past saving
    (a guest's QEMU that did not finish), where a polite SIGTERM would only add a wait."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return proc.returncode


def lower_priority(pid: int, nice: int) -> None:
    """Run process ``pid``, a session leader, at ``nice``; what it starts later inherits it.

    Where the kernel groups each session for scheduling (``CONFIG_SCHED_AUTOGROUP``, on in
    Debian's), a process's own nice value only ranks it inside its session, and a VM runs in a
    session of its own: the session's group gets the value too."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    with suppress(FileNotFoundError):  # a kernel without autogroups
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
