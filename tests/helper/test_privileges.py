"""The privilege drop of a real ``scsi-pr-helper`` (issue 10 items 5 and 6; root only, as in CI).

Per backend, after one handshake (the helper listens before it drops privileges and serves only
after), ``/proc/PID/status`` must show exactly the capabilities the executor declares (sim: none;
sg: CAP_SYS_RAWIO; multipath: CAP_SYS_RAWIO + CAP_SYS_ADMIN; none inheritable or ambient: no
executor execs a program), NoNewPrivs 1, and the ``-u``/``-g`` ids. And a helper dropped to
``nobody`` serves a ``--state-dir`` that root created, or that a root helper left files in.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.helper import caps, state_owner
from scsi_pr.helper.client import Client
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.executors.multipath import MultipathExecutor
from scsi_pr.helper.executors.sg import SgExecutor
from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.main import make_executor
from scsi_pr.helper.options import Options
from scsi_pr.rig import processes
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

EXE = helper_executable()
GOOD = 0x00
READ_KEYS = persistent_reserve_in(0, 256)
READ_RESERVATION = persistent_reserve_in(1, 256)
RAWIO, ADMIN = 1 << caps.CAP_SYS_RAWIO, 1 << caps.CAP_SYS_ADMIN
NOBODY = "nobody"
NOGROUP = "nogroup"

# The real life cycle (``main.main``) with the executor of one backend forced, so that the sg and
# multipath cases do not depend on this host's device-mapper or libmpathpersist: multipath gets
# /dev/null as its control fd and no library (neither is used: the test sends no command).
FORCED = """
import os, sys
from scsi_pr.helper import main
from scsi_pr.helper.executors.dm import DeviceMapper
from scsi_pr.helper.executors.multipath import MultipathExecutor
from scsi_pr.helper.executors.sg import SgExecutor

kind = sys.argv.pop(1)

def make(opts):
    if kind == "multipath":
        control = DeviceMapper(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
        no_library = type("NoLibrary", (), {"close": lambda self: None})()  # never called
        return MultipathExecutor(SgExecutor(), control, no_library)
    return SgExecutor()

main.make_executor = make
sys.exit(main.main(sys.argv[1:]))
"""

#: backend -> (CapEff = CapPrm = CapBnd, CapInh = CapAmb)
EXPECTED = {
    "sim": (0, 0),
    "sg": (RAWIO, 0),
    "multipath": (RAWIO | ADMIN, 0),
}


@pytest.fixture(autouse=True)
def root_only() -> None:
    if os.geteuid() != 0:
        unavailable("the privilege drop needs root")


def start(tmp: Path, name: str, kind: str, *extra: str) -> subprocess.Popen[bytes]:
    """A helper whose executor is ``kind``'s (sim, sg or multipath)."""
    sock, log = tmp / f"{name}.sock", tmp / f"{name}.log"
    if kind == "sim":
        argv = [EXE, "--backend", "sim"]
    else:
        argv = [sys.executable, "-c", FORCED, kind, "scsi-pr-helper"]
    return processes.spawn_listening([*argv, "-k", str(sock), *extra], sock, log, 20)


def status_after_handshake(tmp: Path, name: str, proc: subprocess.Popen[bytes]) -> dict[str, str]:
    with Client(str(tmp / f"{name}.sock")) as c:
        c.connect()
    text = Path(f"/proc/{proc.pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def nobody() -> tuple[int, int]:
    """The uid of ``nobody`` and the gid of ``nogroup``."""
    return pwd.getpwnam(NOBODY).pw_uid, grp.getgrnam(NOGROUP).gr_gid


# -- item 6: capabilities follow the backend; NoNewPrivs --------------------------------------
@pytest.mark.parametrize("user", ["root", NOBODY])
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_capabilities_follow_the_backend(tmp_path: Path, kind: str, user: str) -> None:
    extra = ["-u", NOBODY, "-g", NOGROUP] if user == NOBODY else []
    proc = start(tmp_path, "h", kind, *extra)
    try:
        fields = status_after_handshake(tmp_path, "h", proc)
    finally:
        assert processes.stop(proc, 20) == 0, processes.log_tail(tmp_path / "h.log")
    kept, inherited = EXPECTED[kind]
    got = {name: int(fields[name], 16) for name in ("CapEff", "CapPrm", "CapBnd")}
    assert got == dict.fromkeys(got, kept), f"{kind}: {got}"
    assert int(fields["CapInh"], 16) == int(fields["CapAmb"], 16) == inherited
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Groups"].strip() == ""
    uid, gid = nobody() if user == NOBODY else (0, 0)
    assert fields["Uid"].split() == [str(uid)] * 4
    assert fields["Gid"].split() == [str(gid)] * 4


def test_executors_declare_what_they_need() -> None:
    assert SimExecutor.capabilities == frozenset()
    assert SgExecutor.capabilities == frozenset({"CAP_SYS_RAWIO"})
    assert MultipathExecutor.capabilities == frozenset({"CAP_SYS_RAWIO", "CAP_SYS_ADMIN"})
    for name in MultipathExecutor.capabilities:
        assert name in caps.CAPABILITIES  # every declared name has a number


def test_the_real_sg_backend_keeps_what_its_executor_declares(tmp_path: Path) -> None:
    """``--backend sg`` as it starts here: plain SG_IO, or multipath where the host has
    device-mapper and mpathpersist (the VM); either way the declared set, no more."""
    executor = make_executor(Options(backend="sg"))
    try:
        expected = sum(1 << caps.CAPABILITIES[name] for name in executor.capabilities)
    finally:
        executor.close()
    sock, log = tmp_path / "sg.sock", tmp_path / "sg.log"
    proc = processes.spawn_listening([EXE, "-k", str(sock)], sock, log, 20)
    try:
        fields = status_after_handshake(tmp_path, "sg", proc)
    finally:
        assert processes.stop(proc, 20) == 0
    assert int(fields["CapEff"], 16) == int(fields["CapBnd"], 16) == expected
    assert fields["NoNewPrivs"].strip() == "1"


# -- item 5: -u nobody with --state-dir ------------------------------------------------------
@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory nobody may traverse (pytest's own tmp dirs are root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="scsi-pr-privileges-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def image(reachable: Path) -> Iterator[Callable[[], int]]:
    path = reachable / "lu.img"
    path.write_bytes(bytes(1 << 16))
    fd = os.open(path, os.O_RDWR)
    yield lambda: fd
    os.close(fd)


def register(key: int, new: int) -> tuple[bytes, bytes]:
    return persistent_reserve_out(0, 24), pr_out_parameters(key, new)


def owners(state: Path) -> set[tuple[str, int, int]]:
    return {(p.name, p.stat().st_uid, p.stat().st_gid) for p in [state, *state.iterdir()]}


@pytest.mark.parametrize("left_by_root", [False, True], ids=["new-dir", "files-left-by-root"])
def test_nobody_serves_a_state_dir_root_created(
    tmp_path: Path, reachable: Path, image: Callable[[], int], left_by_root: bool
) -> None:
    state = reachable / "state"
    fd = image()
    if left_by_root:  # a helper run as root leaves its state, lock and temporary files
        proc = start(tmp_path, "root", "sim", "--state-dir", str(state))
        try:
            with Client(str(tmp_path / "root.sock")) as c:
                assert c.execute(fd, *register(0, 0x11)).status == GOOD
        finally:
            assert processes.stop(proc, 20) == 0
        for path in state.iterdir():
            path.with_name(path.name + ".tmp").write_bytes(b"left over")
        assert {uid for _name, uid, _gid in owners(state)} == {0}
    proc = start(tmp_path, "nobody", "sim", "-u", NOBODY, "-g", NOGROUP, "--state-dir", str(state))
    old = 0x11 if left_by_root else 0
    try:
        with Client(str(tmp_path / "nobody.sock")) as c:
            keys = c.execute(fd, READ_KEYS)
            assert keys.status == GOOD, keys
            assert keys.data[8:16] == (old.to_bytes(8, "big") if old else b"")
            assert c.execute(fd, *register(old, 0x22)).status == GOOD
            reserve = persistent_reserve_out(1, 24, 1), pr_out_parameters(0x22)
            assert c.execute(fd, *reserve).status == GOOD
            held = c.execute(fd, READ_RESERVATION)
            assert held.status == GOOD and held.data[8:16] == (0x22).to_bytes(8, "big")
    finally:
        assert processes.stop(proc, 20) == 0, processes.log_tail(tmp_path / "nobody.log")
    found = owners(state)
    assert {(u, g) for _name, u, g in found} == {nobody()}, found
    assert any(name.endswith(".json") for name, _u, _g in found)


def test_a_state_dir_the_user_cannot_reach_fails_at_start(tmp_path: Path) -> None:
    """Under root's 0700 pytest dir nobody cannot reach the state dir: a clear error at start,
    not CHECK CONDITION for every command later."""
    state = tmp_path / "state"
    sock = tmp_path / "u.sock"
    done = subprocess.run(
        [EXE, "--backend", "sim", "-k", str(sock), "-u", NOBODY, "--state-dir", str(state)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"state dir {state} is not writable by uid {nobody()[0]}" in done.stderr
    assert not sock.exists()


def test_a_planted_link_in_the_state_dir_is_not_chowned(
    tmp_path: Path, reachable: Path, image: Callable[[], int]
) -> None:
    """Handing the state dir to the user must not hand over what links in it point to."""
    state = reachable / "state"
    state.mkdir()
    victim = reachable / "victim"
    victim.write_text("root's")
    (state / "symlink.json").symlink_to(victim)
    os.link(victim, state / "hardlink.json")
    proc = start(tmp_path, "n", "sim", "-u", NOBODY, "-g", NOGROUP, "--state-dir", str(state))
    try:
        with Client(str(tmp_path / "n.sock")) as c:
            assert c.execute(image(), READ_KEYS).status == GOOD
    finally:
        assert processes.stop(proc, 20) == 0
    assert (victim.stat().st_uid, victim.stat().st_gid) == (0, 0)
    assert state.stat().st_uid == nobody()[0]


def test_hand_over_changes_only_regular_single_link_files(reachable: Path) -> None:
    state = reachable / "state"
    state.mkdir()
    (state / "lu.json").write_text("{}")
    os.mkfifo(state / "fifo")  # opening it for reading would block without O_NONBLOCK
    (state / "subdir").mkdir()
    groups = os.getgroups()
    state_owner.hand_over(state, *nobody())
    owner = {p.name: (p.lstat().st_uid, p.lstat().st_gid) for p in state.iterdir()}
    assert owner == {"lu.json": nobody(), "fifo": (0, 0), "subdir": (0, 0)}
    assert (state.stat().st_uid, state.stat().st_gid) == nobody()
    assert state_owner.writable_by(state, *nobody())
    private = reachable / "private"
    private.mkdir(mode=0o700)
    assert not state_owner.writable_by(private, *nobody())
    assert not state_owner.writable_by(private / "below", *nobody())
    assert (os.geteuid(), os.getegid(), os.getgroups()) == (0, 0, groups)  # all back
