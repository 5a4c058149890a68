"""Simulated LUs shared by several helper processes: one LU per image file, state on disk.

Several ``scsi-pr-helper --backend sim --initiator NAME --state-dir DIR`` processes stand for
several hosts sharing one LUN. They share the LU through flock'ed state files rather than a
server process: nothing to start or supervise, and a helper that crashes mid-command cannot
wedge the others (the kernel drops its lock). Per LU, under an exclusive ``flock`` of
``<stem>.lock``, a helper reloads ``<stem>.json`` if another process changed it, runs the
command on the model, and commits the new state document (the model's snapshot and its APTPL
image together) with one rename (``scsi_pr.helper.lu_state_file``: how, and when it syncs).
Each commit first writes a fresh random token into the lock file, so "did anyone else write
since I did?" costs one ``pread`` (a crash between token and rename only makes others reload).

The LU is named by the image file's identity (``scsi_pr.helper.lu_identity``: device, inode and
the inode's birth), so any path or fd of the same file reaches the same LU, and a new file
never inherits a deleted one's. ``scsi-pr sim`` (``scsi_pr.helper.sim_cli``) inspects and
changes that state from the command line through ``SharedLUs``, so the state dir's layout is
known here only.

Locks are per LU, in the process as on disk: an LU whose lock another process holds (a helper
stopped mid-command, say) delays only the commands for that LU. A process keeps at most
``cache_size`` LUs it is not using; with a state dir the disk is the truth and an evicted LU is
read back on its next command. Without one (the benchmark's fast path) the process holds the
only copy: LUs with any state are kept for the life of the process, and only LUs a fresh LU
would equal are dropped beyond ``cache_size``. An in-memory LU's medium is not such state: the
helper runs PR commands only, and READ/WRITE through ``run_on_file`` use the image's bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.lu_identity import LuKey, identify_path
from scsi_pr.helper.lu_state_file import LuDocument, StateFileError, commit, read_document
from scsi_pr.sim import profiles
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.faults import FaultHook, Stall
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.profiles import Profile, ProfileMismatch
from scsi_pr.sim.state import StateFormatError
from scsi_pr.sim.store import MemoryAptplStore

T = TypeVar("T")
LU_BLOCK_SIZE = 512
TOKEN_SIZE = 16
LU_CACHE_SIZE = 128  # LUs a process keeps while not using them
FAULT_FILE_MAX = 4096  # a fault file is one small JSON object (``set_stall``)
FRESH_SNAPSHOTS = {  # what an LU nobody used holds, per profile
    name: LogicalUnit(profile=name).snapshot() for name in profiles.PROFILES
}


#: True where a lock held elsewhere must not be waited for (an event loop's own thread: see
#: ``no_waiting``)
_NO_WAITING: ContextVar[bool] = ContextVar("scsi_pr_simserve_no_waiting", default=False)


class LuBusy(HelperError):
    """Under ``no_waiting``: the LU's lock is held elsewhere, nothing was run; run it where
    waiting is harmless."""


@contextlib.contextmanager
def no_waiting() -> Iterator[None]:
    """Within: ``SharedLUs.run`` raises ``LuBusy`` before running anything rather than wait
    for the LU's lock (a thread's or another process's). For a caller that may run commands on
    its event loop's thread when they need not wait, and hands them to a thread when they do."""
    token = _NO_WAITING.set(True)
    try:
        yield
    finally:
        _NO_WAITING.reset(token)


class LuProfileMismatch(StateFileError):
    """The LU's state file was written under another profile than this process runs: the
    helpers and targets sharing a state dir must agree on how the LU answers."""


@dataclass(frozen=True)
class LuFiles:
    """The files one LU keeps in a state dir, all named after its key."""

    state: Path  # the state document, replaced whole by every change (``lu_state_file``)
    temp: Path  # the next state document while it is written (under the lock)
    fault: Path  # faults set with ``scsi-pr sim stall``, read before every command
    fault_temp: Path  # the next fault file while it is written (under the lock)
    lock: Path  # flock'ed per command; its first bytes are the token of the last commit

    @classmethod
    @functools.lru_cache(maxsize=LU_CACHE_SIZE)
    def of(cls, state_dir: Path, key: LuKey) -> LuFiles:
        """Memoised: the names are built per command otherwise (five path joins, a hash)."""
        stem = key.stem
        return cls(
            state=state_dir / f"{stem}.json",
            temp=state_dir / f"{stem}.json.tmp",
            fault=state_dir / f"{stem}.fault.json",
            fault_temp=state_dir / f"{stem}.fault.json.tmp",
            lock=state_dir / f"{stem}.lock",
        )

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.state, self.temp, self.fault, self.fault_temp, self.lock)


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


@dataclass
class _Slot:
    """One LU as this process last saw it; ``mutex`` orders this process's commands on it."""

    mutex: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # commands holding or waiting for ``mutex`` (never evicted while > 0)
    lu: LogicalUnit | None = None
    store: MemoryAptplStore = field(default_factory=MemoryAptplStore)
    token: bytes = b""  # the lock file's token when ``doc`` was read or written
    doc: LuDocument | None = None  # the state as on disk (a fresh LU's if there is no file)

    def document(self) -> LuDocument:
        assert self.lu is not None
        return LuDocument(self.lu.snapshot(), self.store.load())

    def pristine(self) -> bool:
        """Nothing a fresh LU would not hold, but the I_T nexuses it has seen: an unused LU
        is dropped even so (a bounded cache), forgetting the nexuses LIO's profiles consult
        for SPEC_I_PT and REGISTER AND MOVE until they send a command again."""
        if self.lu is None:
            return True
        state = {**self.lu.snapshot(), "nexuses": []}
        return self.store.load() is None and state == FRESH_SNAPSHOTS[self.lu.profile.name]


class SharedLUs:
    """The simulated LUs a helper process serves; on disk when ``state_dir`` is set.

    ``profile`` is how every LU answers (``scsi_pr.sim.profiles``); an LU whose state file
    names another profile is refused (``LuProfileMismatch``). None (the inspection tools of
    ``scsi-pr sim``) takes each LU's profile from its state file, ``spc5`` for a new LU.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        target_ports: int = 2,
        cache_size: int = LU_CACHE_SIZE,
        profile: Profile | str | None = profiles.DEFAULT_PROFILE,
    ) -> None:
        self.profile = None if profile is None else profiles.get(profile)
        self.state_dir = None if state_dir is None else Path(state_dir)
        # Every process sharing a state dir must build the LU with the same ports: the port
        # set is not PR state, but ALL_TG_PT registrations expand over it.
        self.target_ports = tuple(range(1, target_ports + 1))
        self.cache_size = cache_size
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self._slots: OrderedDict[LuKey, _Slot] = OrderedDict()  # least recently used first
        self._guard = threading.Lock()  # guards ``_slots`` only, never held across a command

    @property
    def cached(self) -> int:
        """How many LUs this process holds in memory."""
        return len(self._slots)

    def files(self, key: LuKey) -> LuFiles:
        if self.state_dir is None:
            raise ValueError("simulated LUs without a state dir keep no files")
        return LuFiles.of(self.state_dir, key)

    # -- faults and forgetting (``scsi-pr sim stall`` / ``forget``) ---------------------------
    @staticmethod
    def _fault_hook(path: Path) -> FaultHook:
        """Faults set with ``scsi-pr sim stall``: read per command, so a running helper obeys
        them at once (one failed open per command when there is none)."""

        name = os.fspath(path)  # os.open, not Path.read_bytes: one failed open per command

        def hook(nexus: ITNexus, cdb: bytes) -> Stall | None:
            try:
                fd = os.open(name, os.O_RDONLY)  # close-on-exec: Python's fds are (PEP 446)
            except OSError:
                return None  # no fault file: no fault
            try:
                doc = json.loads(os.read(fd, FAULT_FILE_MAX))
                stall = float(doc["stall"])
            except (OSError, ValueError, KeyError, TypeError):
                return None  # one ``set_stall`` did not write: no fault
            finally:
                os.close(fd)
            return Stall(stall) if stall > 0 else None

        return hook

    def set_stall(self, key: LuKey, seconds: float) -> None:
        """Delay every command on the LU by ``seconds`` (0 = stop), in every helper at once."""
        files = self.files(key)
        with self._flocked(files.lock):
            files.fault_temp.write_text(json.dumps({"stall": seconds}))
            os.replace(files.fault_temp, files.fault)

    def forget(self, key: LuKey) -> None:
        """Remove every file of the LU: the next command finds a fresh LU. The lock file goes
        last, while held: a helper waiting for it sees it was replaced and takes the new one."""
        files = self.files(key)
        with self._flocked(files.lock):
            for path in files.all:
                path.unlink(missing_ok=True)

    # -- locking ------------------------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def _flocked(path: Path) -> Iterator[int]:
        """An exclusive flock of the lock file at ``path``, retried if ``forget`` unlinked the
        file while we waited for it (a lock on an unlinked file excludes nobody). Under
        ``no_waiting`` a lock held elsewhere raises ``LuBusy``."""
        mode = fcntl.LOCK_EX | (fcntl.LOCK_NB if _NO_WAITING.get() else 0)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(fd, mode)
                except BlockingIOError:
                    raise LuBusy(f"{path} is locked") from None
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield fd
        finally:
            os.close(fd)  # releases the flock

    def _acquire(self, key: LuKey) -> _Slot:
        with self._guard:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            else:
                self._slots.move_to_end(key)
            slot.users += 1
            return slot

    def _release(self, key: LuKey, slot: _Slot) -> None:
        with self._guard:
            slot.users -= 1
            if len(self._slots) <= self.cache_size:
                return
            if self.state_dir is None:  # the only copy: drop only what a fresh LU equals
                if slot.users == 0 and self._slots.get(key) is slot and slot.pristine():
                    del self._slots[key]
                return
            excess = len(self._slots) - self.cache_size
            idle = [k for k, s in self._slots.items() if s.users == 0][:excess]
            for k in idle:
                del self._slots[k]

    # -- the LU's state -----------------------------------------------------------------------
    def _new_lu(
        self, key: LuKey, size: int, store: MemoryAptplStore, saved: str | None = None
    ) -> LogicalUnit:
        """``saved``: the profile the LU's state file names, adopted when ``profile`` is None."""
        profile = self.profile or saved or profiles.DEFAULT_PROFILE
        return LogicalUnit(
            blocks=max(size // LU_BLOCK_SIZE, 1),
            block_size=LU_BLOCK_SIZE,
            target_ports=self.target_ports,
            serial=key.serial,
            store=store,
            profile=profile,
        )

    def _load(self, slot: _Slot, key: LuKey, size: int, lock: int) -> LogicalUnit:
        token = os.pread(lock, TOKEN_SIZE, 0)
        if slot.lu is not None and slot.token == token:
            return slot.lu  # nobody committed since we last read or wrote
        files = self.files(key)
        doc = read_document(files.state)
        store = MemoryAptplStore(None if doc is None else doc.aptpl)
        saved = None if doc is None else doc.state.get("profile")
        try:
            lu = self._new_lu(key, size, store, saved if isinstance(saved, str) else None)
            if doc is not None:
                lu.restore(doc.state)  # after the power-on state its APTPL image gave it
        except ProfileMismatch as e:
            raise LuProfileMismatch(f"{files.state}: {e}") from e
        except (StateFormatError, profiles.UnknownProfile) as e:
            raise StateFileError(f"{files.state}: {e}") from e
        lu.fault = self._fault_hook(files.fault)
        slot.lu, slot.store, slot.token = lu, store, token
        slot.doc = slot.document()
        return lu

    def _save(self, slot: _Slot, key: LuKey, lock: int) -> None:
        new = slot.document()
        if new == slot.doc:
            return
        files = self.files(key)
        token = os.urandom(TOKEN_SIZE)
        commit(files.state, files.temp, new, slot.doc, lambda: os.pwrite(lock, token, 0))
        slot.token, slot.doc = token, new

    def _run_in_memory(self, slot: _Slot, key: LuKey, size: int) -> LogicalUnit:
        if slot.lu is None:
            slot.lu = self._new_lu(key, size, slot.store)
        return slot.lu

    def run(
        self, key: LuKey, size: int, fn: Callable[[LogicalUnit], T], path: str | None = None
    ) -> T:
        """Run ``fn`` on the LU for ``key`` with its state current and committed afterwards.

        With ``path`` (the image file) READ/WRITE use the file's bytes as the medium; the
        helper itself only runs PR commands, which never touch the medium.
        """
        slot = self._acquire(key)
        try:
            if not slot.mutex.acquire(blocking=not _NO_WAITING.get()):
                raise LuBusy(f"LU {key.serial} is in use by another thread")
            try:
                return self._run_held(slot, key, size, fn, path)
            finally:
                slot.mutex.release()
        finally:
            self._release(key, slot)

    def _run_held(
        self, slot: _Slot, key: LuKey, size: int, fn: Callable[[LogicalUnit], T], path: str | None
    ) -> T:
        """``run`` with the slot's mutex held."""
        if self.state_dir is None:
            lu = self._run_in_memory(slot, key, size)
            _use_medium(lu, path)
            return fn(lu)
        with self._flocked(self.files(key).lock) as lock:
            lu = self._load(slot, key, size, lock)
            _use_medium(lu, path)
            try:
                result = fn(lu)
                self._save(slot, key, lock)
            except BaseException:
                slot.lu = None  # ahead of the disk or half changed: read it back
                raise
            return result

    def run_on_file(self, path: str | os.PathLike[str], fn: Callable[[LogicalUnit], T]) -> T:
        key, st = identify_path(path)
        return self.run(key, st.st_size, fn, os.fspath(path))


def _use_medium(lu: LogicalUnit, path: str | None) -> None:
    if path is not None and not (isinstance(lu.medium, FileMedium) and lu.medium.path == path):
        lu.medium = FileMedium(path)
