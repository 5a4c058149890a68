"""Simulated LUs shared by several helper processes: one LU per image file, state on disk.

Several ``scsi-pr-helper --backend sim --initiator NAME --state-dir DIR`` processes stand for
several hosts sharing one LUN. They share the LU through flock'ed state files rather than a
server process: nothing to start or supervise, and a helper that crashes mid-command cannot
wedge the others (the kernel drops its lock). Per LU, under an exclusive ``flock`` of
``lu-<dev>-<ino>.lock``, a helper reloads ``lu-<dev>-<ino>.json`` if another process changed it,
runs the command on the model, and writes the new snapshot with write-temp + ``rename`` (atomic:
readers see the old or the new state, never a torn one). Each save first writes a fresh random
token into the lock file, so "did anyone else write since I did?" costs one ``pread`` (a crash
between token and rename only makes the others reload). No fsync per command: the state must
survive a helper crash, not a host crash (the model's own APTPL file covers power loss).

The LU is named by the image file's (st_dev, st_ino), so any path or fd of the same file reaches
the same LU. ``scsi-pr sim`` inspects and manipulates that state from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from scsi_pr.helper.aptpl_file import FileAptplStore
from scsi_pr.helper.executable import helper_executable
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.faults import FaultHook, Stall
from scsi_pr.sim.nexus import ITNexus

T = TypeVar("T")
STATE_FORMAT = 1
LU_BLOCK_SIZE = 512
TOKEN_SIZE = 16


@dataclass(frozen=True)
class LuKey:
    """Which simulated LU a file stands for: its device and inode number."""

    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> LuKey:
        return cls(st.st_dev, st.st_ino)

    @property
    def stem(self) -> str:
        return f"lu-{self.dev:x}-{self.ino:x}"

    @property
    def serial(self) -> str:
        """Stable unit serial number, the same in every helper process (16 characters)."""
        return f"SP{self.dev & 0xFFFF:04X}{self.ino & 0xFFFFFFFFFF:010X}"


class FileMedium:
    """The LU's blocks are the image file's bytes, so every process sees the same data."""

    def __init__(self, path: str | os.PathLike[str], block_size: int = LU_BLOCK_SIZE) -> None:
        self.path = os.fspath(path)
        self.block_size = block_size

    def read(self, lba: int, blocks: int) -> bytes:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.pread(fd, blocks * self.block_size, lba * self.block_size)
        finally:
            os.close(fd)
        return data.ljust(blocks * self.block_size, b"\0")

    def write(self, lba: int, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, lba * self.block_size)
        finally:
            os.close(fd)


class SharedLUs:
    """The simulated LUs a helper process serves; on disk when ``state_dir`` is set.

    Without a state dir the LUs live in this process only (the benchmark's fast path).
    """

    def __init__(
        self, state_dir: str | os.PathLike[str] | None = None, target_ports: int = 2
    ) -> None:
        self.state_dir = None if state_dir is None else Path(state_dir)
        # Every process sharing a state dir must build the LU with the same ports: the port
        # set is not PR state, but ALL_TG_PT registrations expand over it.
        self.target_ports = tuple(range(1, target_ports + 1))
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lus: dict[LuKey, LogicalUnit] = {}
        self._seen: dict[LuKey, bytes] = {}  # token of the state we last loaded or saved
        self._state: dict[LuKey, dict[str, Any]] = {}  # that state, to tell if a command changed it
        self._guard = threading.Lock()  # one command at a time per process, as per LU lock

    def _new_lu(self, key: LuKey, size: int, path: str | None = None) -> LogicalUnit:
        store = None
        if self.state_dir is not None:
            store = FileAptplStore(self.state_dir / f"{key.stem}.aptpl.json")
        lu = LogicalUnit(
            blocks=max(size // LU_BLOCK_SIZE, 1),
            block_size=LU_BLOCK_SIZE,
            target_ports=self.target_ports,
            serial=key.serial,
            store=store,
            medium=None if path is None else FileMedium(path),
        )
        if self.state_dir is not None:
            lu.fault = self._fault_hook(self.state_dir / f"{key.stem}.fault.json")
        return lu

    @staticmethod
    def _fault_hook(path: Path) -> FaultHook:
        """Faults set with ``scsi-pr sim stall``: read per command, so a running helper obeys
        them at once (one stat per command when there is none)."""

        def hook(nexus: ITNexus, cdb: bytes) -> Stall | None:
            try:
                doc = json.loads(path.read_bytes())
            except (OSError, ValueError):
                return None
            stall = float(doc.get("stall", 0))
            return Stall(stall) if stall > 0 else None

        return hook

    @contextlib.contextmanager
    def _locked(self, key: LuKey) -> Iterator[int | None]:
        if self.state_dir is None:
            yield None
            return
        lock = os.open(self.state_dir / f"{key.stem}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield lock
        finally:
            os.close(lock)  # releases the flock

    def _state_path(self, key: LuKey) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"{key.stem}.json"

    def _load(self, key: LuKey, size: int, lock: int | None, path: str | None) -> LogicalUnit:
        lu = self._lus.get(key)
        if lock is None:
            if lu is None:
                lu = self._lus[key] = self._new_lu(key, size, path)
            return lu
        token = os.pread(lock, TOKEN_SIZE, 0)
        if lu is not None and token and self._seen.get(key) == token:
            return lu  # nobody wrote since we last did
        lu = self._new_lu(key, size, path)
        path = self._state_path(key)
        if path.exists():
            doc = json.loads(path.read_bytes())
            if doc.get("format") != STATE_FORMAT:
                raise ValueError(f"{path}: unknown simulated LU state format")
            lu.restore(doc["state"])
        self._lus[key] = lu
        self._seen[key] = token
        self._state[key] = lu.snapshot()
        return lu

    def _save(self, key: LuKey, lu: LogicalUnit, lock: int) -> None:
        state = lu.snapshot()
        if state == self._state.get(key) and self._seen.get(key):
            return
        path = self._state_path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": STATE_FORMAT, "state": state}, sort_keys=True))
        token = os.urandom(TOKEN_SIZE)
        os.pwrite(lock, token, 0)
        os.replace(tmp, path)
        self._seen[key] = token
        self._state[key] = state

    def run(
        self, key: LuKey, size: int, fn: Callable[[LogicalUnit], T], path: str | None = None
    ) -> T:
        """Run ``fn`` on the LU for ``key`` with its state current and persisted afterwards.

        With ``path`` (the image file) READ/WRITE use the file's bytes as the medium; the
        helper itself only runs PR commands, which never touch the medium.
        """
        with self._guard, self._locked(key) as lock:
            lu = self._load(key, size, lock, path)
            if lock is None:
                return fn(lu)
            result = fn(lu)
            self._save(key, lu, lock)
            return result

    def run_on_file(self, path: str | os.PathLike[str], fn: Callable[[LogicalUnit], T]) -> T:
        st = os.stat(path)
        return self.run(LuKey.of(st), st.st_size, fn, os.fspath(path))


# -- scsi-pr sim ----------------------------------------------------------------------------
def _describe_lu(lu: LogicalUnit) -> dict[str, Any]:
    res = lu.pr.reservation
    return {
        "generation": lu.pr.generation,
        "aptpl": lu.pr.aptpl,
        "registrations": [
            {"nexus": str(r.nexus), "key": f"{r.key:#x}", "all_tg_pt": r.all_tg_pt}
            for r in lu.pr.registrations.values()
        ],
        "reservation": None
        if res is None
        else {
            "holder": None if res.holder is None else str(res.holder),
            "type": res.type.abbreviation,
        },
    }


def serve(state_dir: str, socket_dir: str, initiators: int, ports: int) -> int:
    """Run one ``scsi-pr-helper --backend sim`` per initiator on ``socket_dir/hostN.sock``, all
    sharing ``state_dir`` (N hosts sharing a LUN), until SIGTERM/SIGINT; then stop them."""
    import signal
    import subprocess
    import time

    helper = helper_executable()
    Path(socket_dir).mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for i in range(initiators):
            name = f"naa.50014050000000{i + 1:02x}"
            sock = Path(socket_dir) / f"host{i + 1}.sock"
            argv = [helper, "--backend", "sim", "--initiator", name, "--state-dir", state_dir]
            argv += ["--target-port", str(i + 1), "--target-ports", str(max(ports, initiators))]
            procs.append(subprocess.Popen([*argv, "-k", str(sock)]))
            print(f"{name} (relative target port {i + 1}): {sock}", flush=True)
        while not stop and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``scsi-pr sim {serve,show,power-cycle,stall,forget} ...``."""
    parser = argparse.ArgumentParser(
        prog="scsi-pr sim",
        description="Simulated LUs shared by several scsi-pr-helper --backend sim processes: "
        "serve starts one helper per initiator on one state dir; the other actions inspect "
        "or change the LU an image file stands for.",
    )
    parser.add_argument("action", choices=["serve", "show", "power-cycle", "forget", "stall"])
    parser.add_argument("image", nargs="?", help="the image file that stands for the LU")
    parser.add_argument("--state-dir", required=True, help="the helpers' --state-dir")
    parser.add_argument(
        "--seconds", type=float, default=0.0, help="stall: delay every command (0 = stop)"
    )
    parser.add_argument("--socket-dir", help="serve: where hostN.sock go (default: state dir)")
    parser.add_argument("--initiators", type=int, default=2, help="serve: helpers to start")
    parser.add_argument("--target-ports", type=int, default=2, help="serve: LU target ports")
    args = parser.parse_args(argv)
    if args.action == "serve":
        if args.initiators < 1:
            parser.error("--initiators must be at least 1")
        return serve(args.state_dir, args.socket_dir or args.state_dir, args.initiators,
                     args.target_ports)  # fmt: skip
    if args.image is None:
        parser.error(f"{args.action} needs the IMAGE file")
    try:
        lus = SharedLUs(args.state_dir)
        key = LuKey.of(os.stat(args.image))
        if args.action == "stall":
            fault = lus.state_dir / f"{key.stem}.fault.json"  # type: ignore[operator]
            tmp = fault.with_name(fault.name + ".tmp")
            tmp.write_text(json.dumps({"stall": args.seconds}))
            os.replace(tmp, fault)
            return 0
        if args.action == "forget":
            for suffix in (".json", ".aptpl.json", ".fault.json", ".lock"):
                (lus.state_dir / f"{key.stem}{suffix}").unlink(missing_ok=True)  # type: ignore[operator]
            return 0
        if args.action == "power-cycle":

            def cycle(lu: LogicalUnit) -> None:
                lu.power_loss()
                lu.power_on()

            lus.run_on_file(args.image, cycle)
        print(json.dumps(lus.run_on_file(args.image, _describe_lu), indent=2))
    except (OSError, ValueError) as e:
        print(f"scsi-pr sim: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
