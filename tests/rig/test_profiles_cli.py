"""``scsi-pr profiles`` and ``docs/lio-deviations.md``: the doc is the registry's, and every test
the registry names is in the conformance suite, marked with that entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from locales import ascii_locale  # noqa: F401 (a fixture, used by name)

import scsi_pr
from scsi_pr import CHECKOUT, checkout_root
from scsi_pr.rig import profiles_cli
from scsi_pr.rig.cli import main as umbrella
from scsi_pr.rig.profiles_cli import (
    DOC_NAME,
    HEADER,
    describe,
    doc_path,
    main,
    read_doc,
    render_markdown,
)
from scsi_pr.sim.deviations import REGISTRY, Deviation
from scsi_pr.sim.profiles import LIO_6_12, SPC5, Profile

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


# A registry of two made-up entries and profiles over them: the real registry has every entry
# measured and no "|" in a title, so the doc's other branches show only here.
PIPE = Deviation(
    "pipe-entry", "a | b answer", "SPC-5 1.2", "GOOD", "RESERVATION CONFLICT",
    ("tests/x.py::test_a", "tests/x.py::test_b"), frozenset({"6.1"}), note="a note",
)  # fmt: skip
QUIET = Deviation(
    "quiet-entry", "quiet", "SPC-5 3", "x", "y", ("tests/y.py::t",), frozenset({"9.9"})
)
LIO_X = Profile("lio-x", "LIO | x", frozenset({PIPE, QUIET}), kernel="9.9")
LIO_Y = Profile("lio-y", "LIO y", frozenset({QUIET}), kernel="6.1")


@pytest.fixture
def made_up_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles_cli, "PROFILES", {"spc5": SPC5, "lio-x": LIO_X, "lio-y": LIO_Y})
    monkeypatch.setattr(profiles_cli, "LIO_PROFILES", (LIO_X, LIO_Y))
    monkeypatch.setattr(profiles_cli, "REGISTRY", (PIPE, QUIET))


@pytest.mark.usefixtures("made_up_registry")
def test_doc_of_a_made_up_registry_whole() -> None:
    """Every part of the doc: a "|" in a title is escaped so the table keeps its columns, an
    entry a kernel has not been measured on says so, one a profile lacks says the kernel
    answers as SPC-5 does, and a note is shown only where there is one."""
    assert render_markdown() == HEADER + "\n" + (
        "## Profiles\n\n"
        "| Profile | Stands for | Entries | Measured on its kernel |\n"
        "|---|---|---|---|\n"
        "| `spc5` | SPC-5 r17, the standard | 0 | — |\n"
        "| `lio-x` | LIO \\| x | 2 | 1 of 2 |\n"
        "| `lio-y` | LIO y | 1 | 0 of 1 |\n\n"
        "## Deviations\n\n"
        "| Entry | Situation | In profiles |\n"
        "|---|---|---|\n"
        "| [`pipe-entry`](#pipe-entry) | a \\| b answer | `lio-x` |\n"
        "| [`quiet-entry`](#quiet-entry) | quiet | `lio-x`, `lio-y` |\n\n"
        "### `pipe-entry`\n\n"
        "A | b answer.\n\n"
        "- **Clause:** SPC-5 1.2\n"
        "- **SPC-5 requires:** GOOD\n"
        "- **LIO answers:** RESERVATION CONFLICT\n"
        "- **Kernels:** `lio-x`: not yet measured on 9.9; "
        "`lio-y`: not in this profile (6.1 answers as SPC-5 requires)\n"
        "- **Test on the real LUN:** `tests/x.py::test_a`, `tests/x.py::test_b`\n"
        "- **Note:** a note\n\n"
        "### `quiet-entry`\n\n"
        "Quiet.\n\n"
        "- **Clause:** SPC-5 3\n"
        "- **SPC-5 requires:** x\n"
        "- **LIO answers:** y\n"
        "- **Kernels:** `lio-x`: measured; `lio-y`: not yet measured on 6.1\n"
        "- **Test on the real LUN:** `tests/y.py::t`\n"
    )


@pytest.mark.usefixtures("made_up_registry")
def test_show_says_which_entries_are_not_measured() -> None:
    """``show`` of a profile: its title, then each entry it has with whether its kernel was
    measured giving that answer; the standard says it has none."""
    assert describe(LIO_X) == (
        "lio-x: LIO | x\n"
        "  pipe-entry (not yet measured): a | b answer\n"
        "  quiet-entry (measured): quiet"
    )
    assert describe(SPC5) == "spc5: SPC-5 r17, the standard\n  (no deviation: the standard)"


@pytest.mark.usefixtures("made_up_registry")
def test_list_whole_with_and_without_the_word_list(capsys: pytest.CaptureFixture[str]) -> None:
    """One line per profile, its entry count aligned, the default marked once."""
    expected = (
        "spc5        0 deviations  SPC-5 r17, the standard (default)\n"
        "lio-x       2 deviations  LIO | x\n"
        "lio-y       1 deviations  LIO y\n"
    )
    assert main([]) == 0
    assert capsys.readouterr().out == expected
    assert main(["list"]) == 0
    assert capsys.readouterr().out == expected


def test_show_of_the_standard_and_of_an_unknown_profile(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown name is refused by argparse with the command's name (exit 2, no traceback)."""
    assert main(["show", "spc5"]) == 0
    assert (
        capsys.readouterr().out == "spc5: SPC-5 r17, the standard\n  (no deviation: the standard)\n"
    )
    with pytest.raises(SystemExit) as refused:
        main(["show", "lio-9"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: scsi-pr profiles show ")
    assert "\nscsi-pr profiles show: error: argument name: invalid choice: 'lio-9'" in err


def test_doc_write_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "lio-deviations.md"
    assert main(["doc", "--output", str(doc)]) == 0
    assert capsys.readouterr() == (f"wrote {doc}\n", "")


@pytest.mark.usefixtures("ascii_locale")
def test_doc_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """The doc has a non-ASCII dash: under an ASCII locale it is still written, and checked,
    as UTF-8."""
    doc = tmp_path / "lio-deviations.md"
    assert main(["doc", "--output", str(doc)]) == 0
    assert doc.read_bytes().decode("utf-8") == render_markdown()
    assert "—" in render_markdown()
    assert main(["doc", "--check", "--output", str(doc)]) == 0


def test_read_doc_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    """No doc yet reads as "", which no rendering equals: ``--check`` calls it stale."""
    assert read_doc(tmp_path / "none.md") == ""
