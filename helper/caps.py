"""Drop every capability but those the executor declares, optionally change uid/gid, and set
NoNewPrivs.

Executors declare capabilities by name (``Executor.capabilities``: sim none, sg CAP_SYS_RAWIO
for SG_IO, multipath also CAP_SYS_ADMIN); ``CAPABILITIES`` maps the names to the kernel's
numbers, so executors never import this module (nor ctypes).

Done with ctypes on glibc's ``capset``/``prctl`` rather than python-prctl or libcap-ng bindings:
those are extension modules that are not in the Python standard library or every distro, and the
helper must run from a plain venv; the kernel ABI used here (capability header v3, PR_CAPBSET_DROP,
PR_SET_KEEPCAPS) has been stable since Linux 2.6.26, PR_SET_NO_NEW_PRIVS since 3.5. The sequence
mirrors libcap-ng's ``capng_change_id(uid, gid, CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING)`` as
qemu-pr-helper uses it, then sets NoNewPrivs, which qemu-pr-helper does not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterable

CAP_SYS_RAWIO = 17
CAP_SYS_ADMIN = 21
#: The capabilities an executor may declare, by name (linux/capability.h).
CAPABILITIES: dict[str, int] = {"CAP_SYS_RAWIO": CAP_SYS_RAWIO, "CAP_SYS_ADMIN": CAP_SYS_ADMIN}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def _capset(keep: Iterable[int]) -> None:
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
        data[i].inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def drop_privileges(
    uid: int | None = None,
    gid: int | None = None,
    keep: Iterable[int] = (),
) -> None:
    """Keep only ``keep`` (effective + permitted; none by default), clear the bounding and
    ambient sets, drop supplementary groups, switch to ``uid``/``gid`` (default: the current
    ones), and set NoNewPrivs last. No executor execs a program, so nothing is made inheritable
    or ambient.

    Why the bounding set too: a uid-0 process that execs a program gets its bounding set as
    permitted capabilities, so clearing only the effective set would not stop a root helper
    from regaining everything through exec. Raises OSError (the caller prints "Failed to drop
    privileges: ...").
    """
    keep = tuple(keep)
    target_uid = os.getuid() if uid is None else uid
    target_gid = os.getgid() if gid is None else gid
    _check(_libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setresgid(target_gid, target_gid, target_gid)
    bounding = capabilities().get("CapBnd", (1 << (_last_cap() + 1)) - 1)
    for cap in range(_last_cap() + 1):
        if cap not in keep and bounding >> cap & 1:  # already out (e.g. systemd's set): skip
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # absent before 4.3: fine
    os.setresuid(target_uid, target_uid, target_uid)
    _capset(keep)
    _check(_libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    no_new_privileges()


def numbers(names: Iterable[str]) -> list[int]:
    """The kernel's numbers for capability names (KeyError for a name not in CAPABILITIES)."""
    return sorted(CAPABILITIES[name] for name in names)


def no_new_privileges() -> None:
    """PR_SET_NO_NEW_PRIVS: no exec'd program can gain privileges again (setuid bits, file
    capabilities), whatever a compromised helper tries to run. It cannot be undone, and
    children inherit it."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def capabilities(pid: int | str = "self") -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of a process, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cap"):
                name, value = line.split(":", 1)
                out[name] = int(value.strip(), 16)
    return out
