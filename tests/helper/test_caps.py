"""``helper/caps.py`` in the test process, so that mutation testing sees it.

Why: test_privileges.py checks the privilege drop of a real helper process, which mutmut
cannot see (it only sees code run in the pytest process). Here glibc is replaced by a fake that
records every ``prctl`` and ``capset`` (the capset one is a real ctypes callback, so it gets the
header and the two data words through C pointers, as the kernel would), and ``os.setgroups``/
``setresgid``/``setresuid`` record too: the exact sequence of the drop is asserted. The real
``prctl``/``capset`` are irreversible, so they only run in forked children, whose findings
come back through a pipe.
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import subprocess
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from needs import unavailable

from scsi_pr.helper import caps

Call = tuple[Any, ...]
CapsetFunc = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
LAST_CAP = 37  # not this kernel's (40), nor caps._last_cap's fallback (40)
#: Bounding set of the fake process: everything (also above LAST_CAP) but caps 3, 24 and 34.
BOUNDING = ((1 << 64) - 1) & ~(1 << 3 | 1 << 24 | 1 << 34)


class FakeLibc:
    """glibc's ``prctl`` and ``capset`` as the drop calls them, recorded in ``calls``; the
    call matching ``fail`` returns -1 with errno ``fail_errno``."""

    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls
        self.fail: Call | None = None
        self.fail_errno = errno.EPERM
        self.capset = CapsetFunc(self._capset)  # C pointers in, as from ctypes to glibc

    def _result(self, call: Call) -> int:
        if call == self.fail:
            ctypes.set_errno(self.fail_errno)
            return -1
        return 0

    def prctl(self, *args: Any) -> int:
        call = ("prctl", *args)
        self.calls.append(call)
        return self._result(call)

    def _capset(self, header_address: int, data_address: int) -> int:
        header = caps._CapHeader.from_address(header_address)
        data = (caps._CapData * 2).from_address(data_address)
        words = tuple((d.effective, d.permitted, d.inheritable) for d in data)
        call = ("capset", header.version, header.pid, words)
        self.calls.append(call)
        return self._result(("capset",))


@pytest.fixture
def calls() -> list[Call]:
    return []


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch, calls: list[Call]) -> FakeLibc:
    """The fake glibc, and the id changes recorded instead of done."""
    fake = FakeLibc(calls)
    monkeypatch.setattr(caps, "_libc", fake)
    monkeypatch.setattr(os, "setgroups", lambda groups: calls.append(("setgroups", groups)))
    for name in ("setresgid", "setresuid"):
        monkeypatch.setattr(os, name, lambda *ids, name=name: calls.append((name, *ids)))
    monkeypatch.setattr(os, "getuid", lambda: 1234)
    monkeypatch.setattr(os, "getgid", lambda: 5678)
    return fake


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The fake process's /proc status (Cap* lines) and cap_last_cap."""
    status = {"CapInh": 0, "CapPrm": BOUNDING, "CapEff": BOUNDING, "CapBnd": BOUNDING, "CapAmb": 0}
    monkeypatch.setattr(caps, "capabilities", lambda pid="self": dict(status))
    monkeypatch.setattr(caps, "_last_cap", lambda: LAST_CAP)
    return status


def drops(*absent: int, last: int = LAST_CAP) -> list[Call]:
    """PR_CAPBSET_DROP for every capability up to ``last`` but ``absent`` ones."""
    return [("prctl", 24, cap, 0, 0, 0) for cap in range(last + 1) if cap not in absent]


def sequence(uid: int, gid: int, dropped: list[Call], words: Call) -> list[Call]:
    return [
        ("prctl", 8, 1, 0, 0, 0),  # PR_SET_KEEPCAPS on
        ("setgroups", []),
        ("setresgid", gid, gid, gid),
        *dropped,
        ("prctl", 47, 4, 0, 0, 0),  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
        ("setresuid", uid, uid, uid),
        ("capset", 0x20080522, 0, words),
        ("prctl", 8, 0, 0, 0, 0),  # PR_SET_KEEPCAPS off
        ("prctl", 38, 1, 0, 0, 0),  # PR_SET_NO_NEW_PRIVS
    ]


# -- drop_privileges: the sequence ------------------------------------------------------------
def test_drop_everything_as_the_current_ids(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    caps.drop_privileges()
    assert calls == sequence(1234, 5678, drops(3, 24, 34), ((0, 0, 0), (0, 0, 0)))


def test_drop_to_given_ids_keeping_capabilities_in_both_words(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    """Kept: 0 and 31 (low word's ends), 32 and 33 (high word), 17; 3 is kept though already
    out of the bounding set (capset is asked for it all the same: the kernel decides)."""
    caps.drop_privileges(65534, 65533, keep=iter([17, 0, 31, 32, 33, 3]))
    low = 1 << 0 | 1 << 3 | 1 << 17 | 1 << 31
    high = 1 << 0 | 1 << 1
    words = ((low, low, 0), (high, high, 0))
    assert calls == sequence(65534, 65533, drops(0, 3, 17, 24, 31, 32, 33, 34), words)


def test_drop_to_uid_zero_and_gid_zero(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    """0 is an id like any other, not "the current one"."""
    caps.drop_privileges(0, 0, keep=[40])
    words = ((0, 0, 0), (1 << 8, 1 << 8, 0))
    assert calls == sequence(0, 0, drops(3, 24, 34), words)


def test_only_the_uid_or_only_the_gid(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    caps.drop_privileges(uid=7)
    assert calls == sequence(7, 5678, drops(3, 24, 34), ((0, 0, 0), (0, 0, 0)))
    calls.clear()
    caps.drop_privileges(gid=9)
    assert calls == sequence(1234, 9, drops(3, 24, 34), ((0, 0, 0), (0, 0, 0)))


def test_without_a_bounding_set_line_every_capability_is_dropped(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    del process["CapBnd"]
    caps.drop_privileges(keep=[5])
    assert calls == sequence(1234, 5678, drops(5), ((1 << 5, 1 << 5, 0), (0, 0, 0)))


def test_an_empty_bounding_set_drops_nothing(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    process["CapBnd"] = 0
    caps.drop_privileges(keep=[1, 2])
    assert calls == sequence(1234, 5678, [], ((0b110, 0b110, 0), (0, 0, 0)))


def test_the_bounding_set_is_read_from_this_process_and_cap_last_cap(
    libc: FakeLibc, calls: list[Call]
) -> None:
    """Unfaked ``capabilities()`` and ``_last_cap()``: this process's bounding set, up to the
    kernel's last capability."""
    bounding = int(status_fields("self")["CapBnd"], 16)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    caps.drop_privileges()
    absent = [cap for cap in range(last + 1) if not bounding >> cap & 1]
    assert calls == sequence(1234, 5678, drops(*absent, last=last), ((0, 0, 0), (0, 0, 0)))


def test_an_ambient_clear_that_fails_is_ignored(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    """Before Linux 4.3 there is no ambient set: EINVAL, and nothing to clear."""
    libc.fail, libc.fail_errno = ("prctl", 47, 4, 0, 0, 0), errno.EINVAL
    caps.drop_privileges()
    assert calls == sequence(1234, 5678, drops(3, 24, 34), ((0, 0, 0), (0, 0, 0)))


@pytest.mark.parametrize(
    ("failing", "what", "made"),
    [
        (("prctl", 8, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)", 1),
        (("prctl", 24, 0, 0, 0, 0), "prctl(PR_CAPBSET_DROP)", 4),
        (("prctl", 24, 36, 0, 0, 0), "prctl(PR_CAPBSET_DROP)", 37),
        (("capset",), "capset", 41),
        (("prctl", 8, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)", 42),
        (("prctl", 38, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)", 43),
    ],
)
def test_a_failing_step_stops_the_drop(
    libc: FakeLibc,
    process: dict[str, int],
    calls: list[Call],
    failing: Call,
    what: str,
    made: int,
) -> None:
    """Every checked step raises OSError naming it; nothing after it is done."""
    libc.fail = failing
    with pytest.raises(OSError) as raised:
        caps.drop_privileges()
    assert (raised.value.errno, raised.value.strerror) == (
        errno.EPERM,
        f"{what}: Operation not permitted",
    )
    assert calls == sequence(1234, 5678, drops(3, 24, 34), ((0, 0, 0), (0, 0, 0)))[:made]


def test_a_failing_capset_reports_its_errno(
    libc: FakeLibc, process: dict[str, int], calls: list[Call]
) -> None:
    libc.fail, libc.fail_errno = ("capset",), errno.EINVAL
    with pytest.raises(OSError) as raised:
        caps.drop_privileges(keep=[17])
    assert str(raised.value) == "[Errno 22] capset: Invalid argument"


# -- the pieces -------------------------------------------------------------------------------
def test_no_new_privileges(libc: FakeLibc, calls: list[Call]) -> None:
    caps.no_new_privileges()
    assert calls == [("prctl", 38, 1, 0, 0, 0)]
    libc.fail = ("prctl", 38, 1, 0, 0, 0)
    with pytest.raises(OSError) as raised:
        caps.no_new_privileges()
    assert (raised.value.errno, raised.value.strerror) == (
        errno.EPERM,
        "prctl(PR_SET_NO_NEW_PRIVS): Operation not permitted",
    )


@pytest.mark.parametrize("result", [-1, 1, -22])
def test_check_raises_for_any_non_zero_result(result: int) -> None:
    ctypes.set_errno(errno.ENOSYS)
    with pytest.raises(OSError) as raised:
        caps._check(result, "prctl(X)")
    assert type(raised.value) is OSError
    assert raised.value.errno == errno.ENOSYS
    assert raised.value.args == (errno.ENOSYS, "prctl(X): Function not implemented")


def test_check_passes_zero() -> None:
    ctypes.set_errno(errno.EPERM)
    assert caps._check(0, "prctl(X)") is None


def test_the_errno_is_read_after_the_call() -> None:
    """The errno ctypes saved for the failed call, not a constant."""
    ctypes.set_errno(errno.EACCES)
    with pytest.raises(OSError) as raised:
        caps._check(-1, "capset")
    assert raised.value.args == (errno.EACCES, "capset: Permission denied")


class FakeProc:
    """``open`` for ``caps``: the given text for one path, OSError for another."""

    def __init__(self, files: dict[str, str | OSError]) -> None:
        self.files = files
        self.opened: list[str] = []

    def __call__(self, path: str, *args: Any, **kwargs: Any) -> IO[str]:
        self.opened.append(path)
        found = self.files.get(path)
        if found is None:
            return open(path, *args, **kwargs)
        if isinstance(found, OSError):
            raise found
        return io.StringIO(found)


def test_last_cap_is_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeProc({"/proc/sys/kernel/cap_last_cap": "37\n"})
    monkeypatch.setattr(caps, "open", fake, raising=False)
    assert caps._last_cap() == 37
    assert fake.opened == ["/proc/sys/kernel/cap_last_cap"]


def test_last_cap_of_this_kernel() -> None:
    assert caps._last_cap() == int(Path("/proc/sys/kernel/cap_last_cap").read_text())


@pytest.mark.parametrize(
    "error", [FileNotFoundError(errno.ENOENT, "no"), PermissionError(errno.EACCES, "no")]
)
def test_last_cap_without_the_file_is_40(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    """Kernels before 3.2 have no cap_last_cap; 40 (CAP_CHECKPOINT_RESTORE) is the newest."""
    monkeypatch.setattr(
        caps, "open", FakeProc({"/proc/sys/kernel/cap_last_cap": error}), raising=False
    )
    assert caps._last_cap() == 40


def test_numbers() -> None:
    assert caps.numbers(["CAP_SYS_ADMIN", "CAP_SYS_RAWIO"]) == [17, 21]
    assert caps.numbers(iter(["CAP_SYS_RAWIO", "CAP_SYS_ADMIN"])) == [17, 21]
    assert caps.numbers(["CAP_SYS_ADMIN"]) == [21]
    assert caps.numbers([]) == []


def test_numbers_of_an_unknown_name() -> None:
    with pytest.raises(KeyError) as raised:
        caps.numbers(["CAP_SYS_RAWIO", "CAP_NET_ADMIN"])
    assert raised.value.args == ("CAP_NET_ADMIN",)


def status_fields(pid: int | str) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def expected_capabilities(pid: int | str) -> dict[str, int]:
    fields = status_fields(pid)
    names = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    return {name: int(fields[name].strip(), 16) for name in names}


def test_capabilities_of_this_process() -> None:
    found = caps.capabilities()
    assert found == expected_capabilities("self")
    assert found == caps.capabilities("self")
    assert found["CapBnd"] > 9  # hex digits that are not decimal ones


def test_capabilities_of_another_process() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        found = caps.capabilities(child.pid)
        assert found == expected_capabilities(child.pid)
        assert caps.capabilities(str(child.pid)) == found
    finally:
        child.kill()
        child.wait()


def test_capabilities_parses_only_the_cap_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    status = (
        "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t00000000a0000001\n"
        "CapEff:\t000001ffffffffff\nCapBnd:\t0000000000000010\nCapAmb:\t0000000000000000\n"
        "NoNewPrivs:\t0\nSeccomp:\t0\n"
    )
    fake = FakeProc({"/proc/42/status": status})
    monkeypatch.setattr(caps, "open", fake, raising=False)
    assert caps.capabilities(42) == {
        "CapInh": 0,
        "CapPrm": 0xA0000001,
        "CapEff": (1 << 41) - 1,
        "CapBnd": 16,
        "CapAmb": 0,
    }
    assert fake.opened == ["/proc/42/status"]


def test_a_malformed_cap_line_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value is everything after the name's colon: a second colon is not read as a name
    "CapBnd:\\t00" with the value ff."""
    fake = FakeProc({"/proc/42/status": "CapBnd:\t00:ff\n"})
    monkeypatch.setattr(caps, "open", fake, raising=False)
    with pytest.raises(ValueError):
        caps.capabilities(42)


# -- the real kernel, in forked children ------------------------------------------------------
def in_child(body: Callable[[], Any]) -> Any:
    """``body()`` in a forked child (the drop cannot be undone); its JSON result or, if it
    raised, AssertionError with its traceback."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        status = 1
        try:
            os.close(read_end)
            try:
                out = json.dumps({"result": body()})
                status = 0
            except BaseException:
                out = json.dumps({"error": traceback.format_exc()})
            with os.fdopen(write_end, "w") as f:
                f.write(out)
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        report = json.loads(f.read() or '{"error": "no report"}')
    _, status = os.waitpid(pid, 0)
    assert "error" not in report, report["error"]
    assert os.waitstatus_to_exitcode(status) == 0
    return report["result"]


def after_drop(**kwargs: Any) -> Callable[[], dict[str, Any]]:
    def body() -> dict[str, Any]:
        caps.drop_privileges(**kwargs)
        fields = status_fields("self")
        return {
            "caps": caps.capabilities(),
            "NoNewPrivs": fields["NoNewPrivs"].strip(),
            "Groups": fields["Groups"].strip(),
            "Uid": fields["Uid"].split(),
            "Gid": fields["Gid"].split(),
        }

    return body


@pytest.fixture
def root() -> Iterator[None]:
    if os.geteuid() != 0:
        unavailable("the real drop needs root")
    yield


def test_real_drop_keeping_rawio(root: None) -> None:
    found = in_child(after_drop(keep=[17]))
    one = 1 << 17
    assert found == {
        "caps": {"CapInh": 0, "CapPrm": one, "CapEff": one, "CapBnd": one, "CapAmb": 0},
        "NoNewPrivs": "1",
        "Groups": "",
        "Uid": ["0"] * 4,
        "Gid": ["0"] * 4,
    }


def test_real_drop_to_nobody_keeps_what_it_is_told(root: None) -> None:
    """Across the uid change (PR_SET_KEEPCAPS), in both 32-bit words of the mask."""
    bounding = caps.capabilities()["CapBnd"]
    keep = [cap for cap in (17, 21, 33) if bounding >> cap & 1]
    found = in_child(after_drop(uid=65534, gid=65534, keep=keep))
    mask = sum(1 << cap for cap in keep)
    assert found == {
        "caps": {"CapInh": 0, "CapPrm": mask, "CapEff": mask, "CapBnd": mask, "CapAmb": 0},
        "NoNewPrivs": "1",
        "Groups": "",
        "Uid": ["65534"] * 4,
        "Gid": ["65534"] * 4,
    }
