"""The sim backend's ``--state-dir`` handed to the user the helper drops to (``-u``/``-g``).

Why: the helper starts as root and creates the state dir before it drops privileges (and a
helper run as root before may have left state, lock and temporary files in it); as ``nobody``
it then could not create, open or replace them, and every command failed with 0B/00/06.
Creating the directory after the drop is no answer: its parent (/var/lib, /run) is root's. So,
as systemd does for a unit's ``StateDirectory=``, root gives the directory and the files in it
to the target user before the drop, and checks, as that user, that it can write there: a dir
it cannot reach is an error at start instead of a CHECK CONDITION for every command.

Root changing owners in a directory someone else may write to can be tricked into giving away
what a planted link points to (/etc/shadow): entries are opened relative to the directory's fd
with O_NOFOLLOW, only regular files with a single link are changed, and through the fd that was
opened and checked, so no path is resolved twice.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

KEEP = -1  # chown's "leave this id as it is"


def hand_over(path: str | os.PathLike[str], uid: int | None, gid: int | None) -> None:
    """Give ``path`` and the regular single-link files directly in it to ``uid``/``gid``
    (None: keep that id). OSError if the directory itself cannot be changed."""
    owner = (KEEP if uid is None else uid, KEEP if gid is None else gid)
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchown(dir_fd, *owner)
        for name in os.listdir(dir_fd):
            _hand_over_file(dir_fd, name, *owner)
    finally:
        os.close(dir_fd)


def _hand_over_file(dir_fd: int, name: str, uid: int, gid: int) -> None:
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return  # links, fifos, device nodes, subdirectories: not the helper's files
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:
        return  # gone meanwhile, or replaced by a symlink (ELOOP)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _effective(uid: int | None, gid: int | None) -> Iterator[None]:
    """Run as ``uid``/``gid`` without supplementary groups (as after the drop), for a moment:
    only the effective ids change, so root can change back."""
    groups, euid, egid = os.getgroups(), os.geteuid(), os.getegid()
    os.setgroups([])
    try:
        os.setegid(egid if gid is None else gid)
        try:
            os.seteuid(euid if uid is None else uid)
            try:
                yield
            finally:
                os.seteuid(euid)
        finally:
            os.setegid(egid)
    finally:
        os.setgroups(groups)


def writable_by(path: str | os.PathLike[str], uid: int | None, gid: int | None) -> bool:
    """Whether ``uid``/``gid`` may reach ``path`` and create and replace files in it."""
    with _effective(uid, gid):
        return os.access(path, os.W_OK | os.X_OK, effective_ids=True)
