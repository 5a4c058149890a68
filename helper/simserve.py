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
the same LU. ``scsi-pr sim`` (``scsi_pr.helper.sim_cli``) inspects and changes that state from
the command line through ``SharedLUs``, so the state dir's layout is known here only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from scsi_pr.helper.aptpl_file import FileAptplStore
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


@dataclass(frozen=True)
class LuFiles:
    """The files one LU keeps in a state dir, all named after its key."""

    state: Path  # the model's snapshot, replaced whole after every change
    aptpl: Path  # the model's APTPL store (``scsi_pr.helper.aptpl_file``)
    fault: Path  # faults set with ``scsi-pr sim stall``, read before every command
    lock: Path  # flock'ed per command; its first bytes are the token of the last save

    @classmethod
    def of(cls, state_dir: Path, key: LuKey) -> LuFiles:
        stem = key.stem
        return cls(
            state=state_dir / f"{stem}.json",
            aptpl=state_dir / f"{stem}.aptpl.json",
            fault=state_dir / f"{stem}.fault.json",
            lock=state_dir / f"{stem}.lock",
        )

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.state, self.aptpl, self.fault, self.lock)


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

    def files(self, key: LuKey) -> LuFiles:
        if self.state_dir is None:
            raise ValueError("simulated LUs without a state dir keep no files")
        return LuFiles.of(self.state_dir, key)

    def _new_lu(self, key: LuKey, size: int, path: str | None = None) -> LogicalUnit:
        files = None if self.state_dir is None else self.files(key)
        lu = LogicalUnit(
            blocks=max(size // LU_BLOCK_SIZE, 1),
            block_size=LU_BLOCK_SIZE,
            target_ports=self.target_ports,
            serial=key.serial,
            store=None if files is None else FileAptplStore(files.aptpl),
            medium=None if path is None else FileMedium(path),
        )
        if files is not None:
            lu.fault = self._fault_hook(files.fault)
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

    def set_stall(self, key: LuKey, seconds: float) -> None:
        """Delay every command on the LU by ``seconds`` (0 = stop), in every helper at once."""
        fault = self.files(key).fault
        tmp = fault.with_name(fault.name + ".tmp")
        tmp.write_text(json.dumps({"stall": seconds}))
        os.replace(tmp, fault)

    def forget(self, key: LuKey) -> None:
        """Remove every file of the LU: the next command finds a fresh LU."""
        for path in self.files(key).all:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self, key: LuKey) -> Iterator[int | None]:
        if self.state_dir is None:
            yield None
            return
        lock = os.open(self.files(key).lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield lock
        finally:
            os.close(lock)  # releases the flock

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
        state_file = self.files(key).state
        if state_file.exists():
            doc = json.loads(state_file.read_bytes())
            if doc.get("format") != STATE_FORMAT:
                raise ValueError(f"{state_file}: unknown simulated LU state format")
            lu.restore(doc["state"])
        self._lus[key] = lu
        self._seen[key] = token
        self._state[key] = lu.snapshot()
        return lu

    def _save(self, key: LuKey, lu: LogicalUnit, lock: int) -> None:
        state = lu.snapshot()
        if state == self._state.get(key) and self._seen.get(key):
            return
        path = self.files(key).state
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
