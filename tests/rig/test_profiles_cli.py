"""``scsi-pr profiles`` and ``docs/lio-deviations.md``: the doc is the registry's, and every test
the registry names is in the conformance suite, marked with that entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import scsi_pr
from scsi_pr import CHECKOUT, checkout_root
from scsi_pr.rig.cli import main as umbrella
from scsi_pr.rig.profiles_cli import DOC_NAME, doc_path, main, render_markdown
from scsi_pr.sim.deviations import REGISTRY
from scsi_pr.sim.profiles import LIO_6_12

ROOT = CHECKOUT or Path(__file__).resolve().parents[2]


def test_committed_doc_is_the_registrys() -> None:
    """Edit sim/deviations.py, then run ``scsi-pr profiles doc``: this fails until you do."""
    assert (ROOT / DOC_NAME).read_text() == render_markdown(), "run: scsi-pr profiles doc"


def test_doc_names_every_entry_and_what_was_not_measured() -> None:
    text = render_markdown()
    for d in REGISTRY:
        assert f"### `{d.name}`" in text and d.lio_answer in text
    assert "not yet measured" not in text  # both kernels measured every entry they have
    n = len(LIO_6_12.deviations)
    assert "`lio-6.12` | " in text and f"| {n} | {n} of {n} |" in text
    assert n == len(REGISTRY) - 1  # 6.12 answers READ CAPACITY(10) as SPC-5 does


def test_doc_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "lio-deviations.md"
    assert main(["doc", "--check", "--output", str(doc)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["doc", "--output", str(doc)]) == 0
    assert main(["doc", "--check", "--output", str(doc)]) == 0
    assert doc.read_text() == render_markdown()


def _hostile_output(tmp_path: Path, kind: str) -> str:
    """An ``--output`` found by fuzzing: none of them is a file the doc can go to."""
    return {
        "empty": "",  # Path("") is ".", a directory
        "directory": str(tmp_path),
        "missing parent": str(tmp_path / "no" / "doc.md"),
        "name too long": str(tmp_path / ("n" * 300)),
    }[kind]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "Is a directory"),
        ("directory", "Is a directory"),
        ("missing parent", "No such file or directory"),
        ("name too long", "File name too long"),
    ],
)
def test_doc_output_that_cannot_be_written_is_one_line_and_exit_1(
    kind: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = _hostile_output(tmp_path, kind)
    assert main(["doc", "--output", output]) == 1
    assert capsys.readouterr().err == f"scsi-pr profiles: cannot write {Path(output)}: {reason}\n"


def test_doc_output_in_proc_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """/proc/version refuses a write (EIO, or EACCES when not root): the reason is the OS's."""
    assert main(["doc", "--output", "/proc/version"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scsi-pr profiles: cannot write /proc/version: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("empty", "Is a directory"), ("directory", "Is a directory"),
     ("name too long", "File name too long")],
)  # fmt: skip
def test_doc_check_of_a_path_that_cannot_be_read_is_one_line_and_exit_1(
    kind: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = _hostile_output(tmp_path, kind)
    assert main(["doc", "--check", "--output", output]) == 1
    assert capsys.readouterr().err == f"scsi-pr profiles: cannot read {Path(output)}: {reason}\n"


def test_doc_check_of_a_binary_file_or_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "doc.bin"
    binary.write_bytes(b"\x00\xff\xfe binary")
    assert main(["doc", "--check", "--output", str(binary)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"scsi-pr profiles: cannot read {binary}: 'utf-8' codec can't decode")
    # a doc not written yet is stale, as before: not an error
    assert main(["doc", "--check", "--output", str(tmp_path / "no" / "doc.md")]) == 1
    assert "is stale" in capsys.readouterr().err


def test_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert umbrella(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "spc5" in out and "lio-6.1 " in out and "lio-6.12" in out
    assert main(["show", "lio-6.12"]) == 0
    out = capsys.readouterr().out
    assert "release-wrong-type-conflict (measured)" in out
    assert "read-capacity-10-conflicts-under-ea" not in out, "6.12 answers as SPC-5 requires"
    assert main(["show", "lio-6.1"]) == 0
    assert "release-wrong-type-conflict (measured)" in capsys.readouterr().out
    assert main(["show", "spc5"]) == 0
    assert "no deviation" in capsys.readouterr().out


def test_every_registry_test_is_a_marked_conformance_test() -> None:
    """The conformance conftest refuses a marked test its entry does not list; this is the other
    direction: every listed test exists and carries the entry's mark."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/conformance", "--backend", "sim", "-m", "lio_deviation"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    marked = [line.strip() for line in done.stdout.splitlines() if "::" in line]
    for d in REGISTRY:
        for test in d.tests:
            base, _, param = test.partition("[")
            hits = [m for m in marked if m.startswith(base + "[")]
            if param:
                hits = [m for m in hits if param.rstrip("]") in m]
            assert hits, f"{d.name}: {test} is not a conformance test marked lio_deviation"


def test_the_doc_is_the_checkout_s_else_the_working_directory_s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A checkout's docs are its own wherever the command runs; an installed wheel (the
    mutation stage's copy of the tree) takes the directory it runs in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(scsi_pr, "CHECKOUT", tmp_path / "checkout")
    assert doc_path() == tmp_path / "checkout" / DOC_NAME
    monkeypatch.setattr(scsi_pr, "CHECKOUT", None)
    assert checkout_root() == tmp_path and doc_path() == tmp_path / DOC_NAME
