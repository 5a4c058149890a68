"""The ``scsi-pr-helper`` processes the helper backends talk to: one process class, the pool of
per-initiator helpers that ``helper-sim`` backends share in a test session, and the one helper per
executor that every ``helper-lio`` backend of a process shares.

Kept apart from the backends because their life cycle (start when listening, kill -9 and
restart, replace one a hung LUN left stuck) is its own concern, tested on its own
(``tests/rig/test_shared_helpers.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from scsi_pr.helper import executable
from scsi_pr.rig.backends import BackendUnavailable
from scsi_pr.rig.processes import NotifySocket, NotListening, log_tail, wait_ready
from scsi_pr.sim import profiles


def helper_executable() -> str:
    try:
        return executable.helper_executable()
    except executable.HelperNotInstalled as e:
        raise BackendUnavailable(str(e)) from e


START_QUIET = 20.0  # seconds a starting helper may go without using CPU (processes.wait_ready)
KILL_WAIT = 5.0


@dataclass
class HelperProcess:
    """One running ``scsi-pr-helper`` on ``sock``; ``restart()`` is kill -9 + start."""

    argv: list[str]
    sock: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: where the helper spawned last says READY=1; None once it has
    notify: NotifySocket | None = field(default=None, repr=False)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        if self.notify is not None:  # spawned before and never waited for
            self.notify.close()
        self.notify = NotifySocket()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.argv, "-k", str(self.sock)], stdout=log, stderr=subprocess.STDOUT,
                env=self.notify.env(),
            )  # fmt: skip

    def wait_ready(self) -> None:
        """Until the helper says READY=1 (it serves its socket; no probing connection). A
        helper that has said it already (no NotifySocket left) is ready."""
        assert self.proc is not None
        if self.notify is None:
            return
        try:
            wait_ready(
                self.proc,
                self.notify.ready,
                START_QUIET,
                name="scsi-pr-helper",
                what=f"say it serves {self.sock}",
                output=lambda: log_tail(self.log),
            )
        except NotListening as e:
            self.kill()
            raise BackendUnavailable(str(e)) from None
        finally:
            self.notify.close()
            self.notify = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            # A helper stuck in SG_IO on a hung LUN dies only when the I/O ends: don't wait
            # forever for it (its socket is replaced by the next start anyway).
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(KILL_WAIT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()  # leaves the socket file behind, as a crash does; start() replaces it
        self.start()


class HelperPool:
    """The helper processes of a test session, shared by every ``HelperSimBackend``.

    Starting N Python processes per test would dominate the suite's run time. A fresh LU
    per backend needs no fresh helper: every backend makes a new image file, and a new file
    is a new simulated LU. Images stay until the session ends, so no inode (the LU's name) is
    ever reused. ``restart_helper`` kills and restarts the pooled processes themselves.
    """

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.helpers: dict[tuple[str, int, int, str], HelperProcess] = {}
        self.images = 0

    @property
    def root(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="scsi-pr-helper-sim-")
            atexit.register(self.close)
        return Path(self._tmp.name)

    def state_dir(self, ports: int, profile: str = profiles.DEFAULT_PROFILE) -> Path:
        path = self.root / f"state-{ports}-{profile}"
        path.mkdir(exist_ok=True)
        return path

    def new_image(self) -> Path:
        self.images += 1
        image = self.root / f"lu{self.images}.img"
        image.write_bytes(b"")
        os.truncate(image, 1 << 25)
        return image

    def helpers_for(
        self, names: Sequence[str], ports: int, profile: str = profiles.DEFAULT_PROFILE
    ) -> list[HelperProcess]:
        """One helper per initiator name (initiator i on target port i+1), reused when one for
        that name, port and profile runs already."""
        exe = helper_executable()
        out: list[HelperProcess] = []
        for i, initiator in enumerate(names):
            key = (initiator, i, ports, profile)
            helper = self.helpers.get(key)
            if helper is None:
                argv = [exe, "-q", "--backend", "sim", "--initiator", initiator]
                argv += ["--state-dir", str(self.state_dir(ports, profile))]
                argv += ["--target-port", str(i + 1), "--target-ports", str(ports)]
                argv += ["--profile", profile]
                name = f"helper{len(self.helpers)}-{i}-{ports}-{profile}"
                helper = HelperProcess(argv, self.root / f"{name}.sock", self.root / f"{name}.log")
                self.helpers[key] = helper
            if helper.proc is None or helper.proc.poll() is not None:
                helper.spawn()  # all start in parallel; waited for below
            out.append(helper)
        for helper in out:
            helper.wait_ready()
        return out

    def close(self) -> None:
        for helper in self.helpers.values():
            if helper.proc is not None and helper.proc.poll() is None:
                helper.proc.terminate()
        for helper in self.helpers.values():
            helper.stop()
        self.helpers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


#: the helper-sim backends' pool, one per test session
pool = HelperPool()


class SharedHelpers:
    """One ``scsi-pr-helper`` per executor for the whole process, as one serves a host's many
    VMs: it keeps no state between commands (only connections, each backend its own), and
    starting one costs seconds of interpreter start-up under TCG, which every test of the
    helper-lio backends paid. A helper that a hung LUN left stuck is killed and replaced."""

    helpers: ClassVar[dict[str, tuple[HelperProcess, tempfile.TemporaryDirectory[str]]]] = {}

    @classmethod
    def running(cls, exe: str, executor: str, kind: str) -> HelperProcess:
        """The helper of ``kind`` (its executor, or a name for one whose start-up must see
        something the others need not), started on first use."""
        found = cls.helpers.get(kind)
        if found is not None and found[0].proc is not None and found[0].proc.poll() is None:
            return found[0]
        cls.discard(kind)
        tmp = tempfile.TemporaryDirectory(prefix=f"scsi-pr-helper-{executor}-")
        root = Path(tmp.name)
        helper = HelperProcess([exe, "-q", "--backend", executor], root / "h.sock", root / "h.log")
        try:
            helper.start()
        except BaseException:
            tmp.cleanup()
            raise
        if not cls.helpers:
            atexit.register(cls.stop_all)
        cls.helpers[kind] = (helper, tmp)
        return helper

    @classmethod
    def discard(cls, kind: str) -> None:
        found = cls.helpers.pop(kind, None)
        if found is not None:
            found[0].kill()
            found[1].cleanup()

    @classmethod
    def stop_all(cls) -> None:
        for helper, tmp in cls.helpers.values():
            helper.stop()
            tmp.cleanup()
        cls.helpers.clear()
