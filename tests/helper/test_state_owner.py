"""``helper/state_owner.py`` in the test process, so that mutation testing sees it.

Why: test_privileges.py checks the hand-over through a real helper process, which mutmut cannot
see. Here, as root, ``hand_over`` runs on a directory with every kind of entry (a regular file,
a planted symlink and hard link, a FIFO, a subdirectory) and the owners are read back exactly;
races (an entry swapped between the check and the open) are simulated by a lying ``os.stat``;
``writable_by`` is asked about directories whose modes allow one bit less or more; and the
process's effective ids and groups must be back after every call, also when it raised.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from needs import unavailable
from session_driver import open_fds

from scsi_pr.helper import state_owner

UID, GID = 1001, 1002
NOBODY = 65534


@pytest.fixture(autouse=True)
def root() -> None:
    if os.geteuid() != 0:
        unavailable("changing owners and effective ids needs root")


@pytest.fixture
def groups() -> Iterator[list[int]]:
    """Supplementary groups for this process (root has none here), restored afterwards."""
    before = os.getgroups()
    os.setgroups([4, 27])
    yield [4, 27]
    os.setgroups(before)


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory anyone may traverse (pytest's tmp dirs are root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="scsi-pr-state-owner-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ids() -> tuple[int, int, list[int]]:
    return os.geteuid(), os.getegid(), os.getgroups()


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state dir with every kind of entry, all root's; ``victim`` is outside it."""
    path = tmp_path / "state"
    path.mkdir()
    (path / "lu.json").write_text("{}")
    (path / "lu.json.tmp").write_text("left over")
    victim = tmp_path / "victim"
    victim.write_text("root's")
    (path / "symlink.json").symlink_to(victim)
    (path / "dangling.json").symlink_to(tmp_path / "nowhere")
    os.link(victim, path / "hardlink.json")
    os.mkfifo(path / "fifo")
    (path / "subdir").mkdir()
    (path / "subdir" / "inner.json").write_text("{}")
    return path


def owners(state: Path) -> dict[str, tuple[int, int]]:
    found = {p.name: owner(p) for p in state.iterdir()}
    found["."] = owner(state)
    found["subdir/inner.json"] = owner(state / "subdir" / "inner.json")
    found["../victim"] = owner(state.parent / "victim")
    return found


def expected(dir_and_files: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """The dir and its regular single-link files changed, nothing else."""
    unchanged = (0, 0)
    return {
        ".": dir_and_files,
        "lu.json": dir_and_files,
        "lu.json.tmp": dir_and_files,
        "symlink.json": unchanged,
        "dangling.json": unchanged,
        "hardlink.json": unchanged,
        "fifo": unchanged,
        "subdir": unchanged,
        "subdir/inner.json": unchanged,
        "../victim": unchanged,
    }


# -- hand_over --------------------------------------------------------------------------------
def test_hand_over_changes_the_dir_and_its_regular_single_link_files(state: Path) -> None:
    fds, before = open_fds(), ids()
    state_owner.hand_over(state, UID, GID)
    assert owners(state) == expected((UID, GID))
    assert open_fds() == fds
    assert ids() == before


def test_hand_over_takes_a_path_string(state: Path) -> None:
    state_owner.hand_over(str(state), UID, GID)
    assert owners(state) == expected((UID, GID))


def test_hand_over_to_root_changes_files_back(state: Path) -> None:
    state_owner.hand_over(state, UID, GID)
    state_owner.hand_over(state, 0, 0)
    assert owners(state) == expected((0, 0))


@pytest.mark.parametrize(
    ("uid", "gid", "result"),
    [(None, GID, (300, GID)), (UID, None, (UID, 400)), (None, None, (300, 400))],
)
def test_hand_over_keeps_an_id_given_as_none(
    state: Path, uid: int | None, gid: int | None, result: tuple[int, int]
) -> None:
    for path in (state, state / "lu.json", state / "lu.json.tmp"):
        os.chown(path, 300, 400)
    state_owner.hand_over(state, uid, gid)
    assert owners(state) == expected(result)


def test_hand_over_of_an_empty_dir(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    state_owner.hand_over(empty, UID, GID)
    assert owner(empty) == (UID, GID)


def test_hand_over_needs_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    fds = open_fds()
    with pytest.raises(NotADirectoryError):
        state_owner.hand_over(file, UID, GID)
    with pytest.raises(FileNotFoundError):
        state_owner.hand_over(tmp_path / "missing", UID, GID)
    assert owner(file) == (0, 0)
    assert open_fds() == fds


def test_hand_over_closes_the_dir_when_a_change_fails(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    fds = open_fds()
    monkeypatch.setattr(os, "fchown", refuse)
    with pytest.raises(PermissionError):
        state_owner.hand_over(state, UID, GID)
    assert open_fds() == fds


def test_hand_over_opens_without_following_links(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flags of every open, and every stat of an entry does not follow links."""
    opened: list[tuple[str, int, Any]] = []
    statted: list[tuple[str, Any]] = []
    real_open, real_stat = os.open, os.stat

    def spy_open(path: Any, flags: int, *args: Any, dir_fd: Any = None, **kwargs: Any) -> int:
        opened.append((os.fspath(path), flags, dir_fd is None))
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    def spy_stat(path: Any, *, dir_fd: Any = None, follow_symlinks: Any = True) -> Any:
        statted.append((os.fspath(path), follow_symlinks))
        return real_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "stat", spy_stat)
    state_owner.hand_over(state, UID, GID)
    entry = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    directory = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    assert sorted(opened) == [
        (str(state), directory, True),
        ("hardlink.json", entry, False),
        ("lu.json", entry, False),
        ("lu.json.tmp", entry, False),
    ]
    assert sorted(statted) == [(name, False) for name in sorted(os.listdir(state))]


# -- _hand_over_file: entries swapped between the check and the open --------------------------
def lying_stat(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``os.stat`` that calls ``name`` a regular file, as it was a moment before."""
    real_stat = os.stat

    def stat_then_swap(path: Any, **kwargs: Any) -> Any:
        st = real_stat(path, **kwargs)
        if path == name:
            fields = list(st)
            fields[stat.ST_MODE] = stat.S_IFREG | 0o644
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "stat", stat_then_swap)


def hand_over_file(state: Path, name: str) -> None:
    dir_fd = os.open(state, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fds = open_fds()
        assert state_owner._hand_over_file(dir_fd, name, UID, GID) is None
        assert open_fds() == fds
    finally:
        os.close(dir_fd)


def test_a_file_swapped_for_a_symlink_is_not_followed(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lying_stat(monkeypatch, "symlink.json")
    hand_over_file(state, "symlink.json")
    assert owners(state)["../victim"] == (0, 0)


def test_a_file_swapped_for_a_fifo_is_not_changed(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fstat of what was opened decides (a FIFO has one link too)."""
    writer = os.open(state / "fifo", os.O_RDWR | os.O_NONBLOCK)  # an open for reading never waits
    try:
        lying_stat(monkeypatch, "fifo")
        hand_over_file(state, "fifo")
    finally:
        os.close(writer)
    assert owner(state / "fifo") == (0, 0)


def test_a_file_swapped_for_a_hard_link_is_not_changed(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hand_over_file(state, "hardlink.json")
    assert owners(state)["../victim"] == (0, 0)


def test_a_file_gone_meanwhile_is_skipped(state: Path) -> None:
    hand_over_file(state, "gone.json")
    assert owners(state) == expected((0, 0))


def test_one_regular_file(state: Path) -> None:
    hand_over_file(state, "lu.json")
    assert owners(state) == {**expected((0, 0)), "lu.json": (UID, GID)}


# -- _effective -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uid", "gid", "inside"),
    [
        (NOBODY, GID, (NOBODY, GID)),
        (NOBODY, None, (NOBODY, 0)),
        (None, GID, (0, GID)),
        (None, None, (0, 0)),
    ],
)
def test_effective_switches_and_restores(
    groups: list[int], uid: int | None, gid: int | None, inside: tuple[int, int]
) -> None:
    with state_owner._effective(uid, gid):
        assert ids() == (*inside, [])
        assert (os.getuid(), os.getgid()) == (0, 0)  # the real ids stay: root can change back
    assert ids() == (0, 0, groups)


def test_effective_restores_after_an_error(groups: list[int]) -> None:
    with pytest.raises(LookupError, match=r"^inside$"), state_owner._effective(NOBODY, GID):
        raise LookupError("inside")
    assert ids() == (0, 0, groups)


def test_effective_from_another_effective_gid(groups: list[int]) -> None:
    """Restores what it found, not root's."""
    os.setegid(GID)
    try:
        with state_owner._effective(NOBODY, None):
            assert ids() == (NOBODY, GID, [])
        assert ids() == (0, GID, groups)
    finally:
        os.setegid(0)


# -- writable_by ------------------------------------------------------------------------------
def directory(base: Path, name: str, mode: int, uid: int = 0, gid: int = 0) -> Path:
    path = base / name
    path.mkdir()
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("mode", "writable"),
    [(0o777, True), (0o703, True), (0o700, False), (0o755, False), (0o702, False), (0o701, False)],
)
def test_writable_by_others(reachable: Path, groups: list[int], mode: int, writable: bool) -> None:
    """Creating and replacing files needs write and search permission."""
    path = directory(reachable, "d", mode)
    assert state_owner.writable_by(path, NOBODY, NOBODY) is writable
    assert ids() == (0, 0, groups)


def test_writable_by_the_current_user(reachable: Path, groups: list[int]) -> None:
    path = directory(reachable, "private", 0o700)
    assert state_owner.writable_by(path, None, None) is True
    assert state_owner.writable_by(path, NOBODY, None) is False
    assert ids() == (0, 0, groups)


def test_writable_by_owner_and_group(reachable: Path, groups: list[int]) -> None:
    mine = directory(reachable, "mine", 0o700, UID, GID)
    assert state_owner.writable_by(mine, UID, None) is True
    assert state_owner.writable_by(mine, UID, NOBODY) is True
    assert state_owner.writable_by(mine, NOBODY, GID) is False
    ours = directory(reachable, "ours", 0o070, UID, 27)
    assert state_owner.writable_by(ours, NOBODY, 27) is True
    assert state_owner.writable_by(ours, UID, 27) is False  # the owner's bits decide for UID
    # 27 is a supplementary group of this process, but not of the user after the drop
    assert state_owner.writable_by(ours, NOBODY, None) is False
    assert state_owner.writable_by(ours, NOBODY, NOBODY) is False
    assert ids() == (0, 0, groups)


def test_writable_by_below_an_unreachable_dir(tmp_path: Path, groups: list[int]) -> None:
    """pytest's tmp dir is root's 0700: nobody cannot reach an open dir inside it."""
    path = directory(tmp_path, "open", 0o777)
    assert state_owner.writable_by(path, NOBODY, NOBODY) is False
    assert state_owner.writable_by(path / "missing", None, None) is False
    assert ids() == (0, 0, groups)
