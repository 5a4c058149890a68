"""Where ``scsi-pr-helper`` is found: beside the interpreter first (a venv's console script,
which sudo's or the VM guest's PATH may not hold), then on PATH, else a clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scsi_pr.helper.executable import PROGRAM, HelperNotInstalled, helper_executable


def program_in(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    program = directory / PROGRAM
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return program


@pytest.fixture
def interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A venv's bin/ for this test: its python is what ``sys.executable`` names."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python3"))
    return bin_dir


def test_the_program_beside_the_interpreter_comes_first(
    interpreter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = program_in(interpreter)
    monkeypatch.setenv("PATH", str(program_in(tmp_path / "on-path").parent))
    assert helper_executable() == str(beside)


def test_path_is_searched_when_the_interpreter_has_none_beside_it(
    interpreter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = program_in(tmp_path / "on-path")
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}:{on_path.parent}")
    assert helper_executable() == str(on_path)


def test_no_program_anywhere_names_what_to_install(
    interpreter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(HelperNotInstalled) as missing:
        helper_executable()
    assert str(missing.value) == "scsi-pr-helper is not installed (pip install scsi-pr)"
