"""``scsi-pr-helper``'s command line against the C ``qemu-pr-helper``'s: the same help lines in
the same order, the same answer (status, output, message) to every bad option, and ``-V`` and
``-h`` taking effect before anything else, as QEMU's getopt loop does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.helper.executable import helper_executable

EXE = Path(helper_executable())

C_HELPER = shutil.which("qemu-pr-helper")


def _run(argv0: str, exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Our helper prints the bare name when PATH resolves it to the same file (see
    # scsi_pr.helper.main.invoked_name); keep the program's own directory off PATH so that the
    # run-by-full-path cases mean the same under scripts/test (venv on PATH) and plain pytest.
    exe_dir = os.path.dirname(os.path.realpath(exe))
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and os.path.realpath(d) != exe_dir
    )
    return subprocess.run(
        [argv0, *args], executable=exe, capture_output=True, text=True, timeout=30,
        check=False, env={**os.environ, "PATH": path},
    )  # fmt: skip


def _as_prog(exe: str, *args: str) -> tuple[int, str, str]:
    """Run by full path; the path in messages becomes PROG (the basename stays as it is)."""
    r = _run(exe, exe, *args)
    return r.returncode, r.stdout.replace(exe, "PROG"), r.stderr.replace(exe, "PROG")


def c_helper() -> str:
    """The C helper to compare with (skip, or fail in CI, without it)."""
    if C_HELPER is None:
        unavailable("qemu-pr-helper (qemu-system-common) not installed")
    assert C_HELPER is not None
    return C_HELPER


def test_help_lists_every_line_of_the_c_helper() -> None:
    theirs = _as_prog(c_helper(), "--help")
    ours = _as_prog(str(EXE), "--help")
    assert theirs[0] == ours[0] == 0
    lines = ours[1].splitlines()
    for line in theirs[1].splitlines():
        assert line in lines
    # same order for the C helper's lines
    positions = [lines.index(line) for line in theirs[1].splitlines() if line]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    "args",
    [
        ["-x"],
        ["-k", "relative.sock"],
        ["-k"],
        ["--socket"],
        ["--sock"],
        ["--help=x"],
        ["--foo"],
        ["-u"],
        ["-u", "no-such-user-here"],
        ["-g", "no-such-group-here"],
        ["-vqx"],
        ["-k", "/nonexistent/dir/x.sock"],
        ["-k", "/tmp/scsi-pr-test-stale.sock", "-f", "/nonexistent/x.pid"],
    ],
)
def test_option_errors_match_the_c_helper(args: list[str]) -> None:
    theirs = _as_prog(c_helper(), *args)
    ours = _as_prog(str(EXE), *args)
    Path("/tmp/scsi-pr-test-stale.sock").unlink(missing_ok=True)  # both leave it, as designed
    # error_report() prefixes the program's basename: the only expected difference
    renamed = tuple(t.replace("qemu-pr-helper", "scsi-pr-helper") for t in theirs[1:])
    assert ours == (theirs[0], *renamed)


def test_version_and_help_exit_zero_before_anything_else() -> None:
    r = _run("scsi-pr-helper", str(EXE), "-V", "-x")
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "Written by Paolo Bonzini."
    r = _run("scsi-pr-helper", str(EXE), "-h", "-k", "relative")
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: {EXE} [OPTIONS] FILE\n")
    r = _run("scsi-pr-helper", str(EXE), "--backend", "nvme")
    assert r.returncode == 1 and "invalid backend 'nvme'" in r.stderr
