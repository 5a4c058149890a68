"""Hypothesis's constants cache for the VM (``rig.hypothesis_cache``): filled on the host,
carried by the image without the rest of hypothesis's storage, found by the guest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from scsi_pr.rig import hypothesis_cache, lio, vm


def test_warming_fills_the_constants_cache_of_the_checkout_it_is_given(tmp_path: Path) -> None:
    hypothesis_cache.warm(tmp_path)
    cached = list((tmp_path / ".hypothesis" / "constants").iterdir())
    assert len(cached) >= 50  # one per module of ours at least, each named by its source hash
    assert any("/sim/pr_out.py" in f.read_text(errors="replace") for f in cached)


def test_a_failed_warming_is_reported_and_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    hypothesis_cache.warm(tmp_path)
    assert "warming hypothesis's constants cache failed" in capsys.readouterr().err


def test_the_image_carries_the_constants_cache_and_no_other_storage() -> None:
    storage = str(vm.ROOT / ".hypothesis")
    assert vm._not_in_image(storage, ["constants", "examples", "unicode_data"]) == {
        "examples",
        "unicode_data",
    }
    assert vm._not_in_image(str(vm.ROOT), [".hypothesis", ".git", "out", "sim", ".venv"]) == {
        ".git",
        "out",
    }
    elsewhere = str(vm.ROOT / "tests")
    assert vm._not_in_image(elsewhere, [".hypothesis", "sim", ".ruff_cache"]) == {
        ".hypothesis",
        ".ruff_cache",
    }


def _guest_env(argv: list[str]) -> list[str]:
    return [a for a in argv[argv.index("--") + 1 :] if a.startswith("HYPOTHESIS_")]


def test_the_guest_looks_for_the_cache_in_the_image_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    image = vm.vng_command(["true"], "/boot/vmlinuz-x", "2G", 2, {"main": "/m"}, Path("/i"))
    assert _guest_env(image) == [f"HYPOTHESIS_STORAGE_DIRECTORY={vm.ROOT}/.hypothesis"]
    assert _guest_env(vm.vng_command(["true"], "/boot/vmlinuz-x", "2G", 2)) == []
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", "/elsewhere")
    image = vm.vng_command(["true"], "/boot/vmlinuz-x", "2G", 2, {"main": "/m"}, Path("/i"))
    assert _guest_env(image) == ["HYPOTHESIS_STORAGE_DIRECTORY=/elsewhere"]


# -- the same decisions in this process (the warming itself runs in a child) ------------------
def test_warming_runs_this_module_in_the_checkout_with_its_storage_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[dict] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append({"cmd": cmd, **kwargs})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(hypothesis_cache.subprocess, "run", fake_run)
    hypothesis_cache.warm(tmp_path)
    [call] = seen
    assert call["cmd"] == [sys.executable, "-m", "scsi_pr.rig.hypothesis_cache"]
    assert call["cwd"] == tmp_path and call["timeout"] == hypothesis_cache.WARM_TIMEOUT
    env = call["env"]
    assert isinstance(env, dict) and env["PATH"] == os.environ["PATH"]
    assert env["HYPOTHESIS_STORAGE_DIRECTORY"] == str(tmp_path / ".hypothesis")
    assert call["capture_output"] and call["text"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("outcome", "said"),
    [
        (subprocess.CompletedProcess([], 1, "", "Traceback\nImportError: no crc32c\n"),
         "warming hypothesis's constants cache failed: ImportError: no crc32c"),
        (subprocess.CompletedProcess([], 1, "", ""),
         "warming hypothesis's constants cache failed: no output"),
        (subprocess.TimeoutExpired([], 1.0),
         f"-m scsi_pr.rig.hypothesis_cache took over {hypothesis_cache.WARM_TIMEOUT:g} s"),
    ],
)  # fmt: skip
def test_a_warming_that_fails_or_hangs_says_what_happened(
    outcome: object,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fake_run(cmd: list[str], **kwargs: object) -> object:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(hypothesis_cache.subprocess, "run", fake_run)
    hypothesis_cache.warm(tmp_path)
    err = capsys.readouterr().err
    assert err.startswith("scsi-pr vm: ") and said in err and err.count("\n") == 1


@pytest.mark.parametrize("cached", [True, False])
def test_the_child_fails_when_nothing_was_cached(
    cached: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(hypothesis_cache, "import_everything", lambda: ran.append("import"))
    monkeypatch.setattr(hypothesis_cache, "run_examples", lambda: ran.append("examples"))
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path))
    (tmp_path / "constants").mkdir()
    if cached:
        (tmp_path / "constants" / "0123456789abcdef").write_text("[1]")
    assert hypothesis_cache.main() == (0 if cached else 1)
    assert ran == ["import", "examples"]
    err = capsys.readouterr().err
    assert err == ("" if cached else f"no constants were cached in {tmp_path}/constants\n")


def test_everything_of_ours_is_imported_but_no_main_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imported: list[str] = []
    walked: list[tuple[list[str], str]] = []

    def fake_walk(path: list[str], prefix: str) -> list[SimpleNamespace]:
        walked.append((list(path), prefix))
        return [SimpleNamespace(name=f"{prefix}a"), SimpleNamespace(name=f"{prefix}__main__")]

    def fake_import(name: str) -> SimpleNamespace:
        imported.append(name)
        return SimpleNamespace(__name__=name, __path__=[f"/src/{name}"])

    monkeypatch.setattr(lio, "_rtslib", lambda: imported.append("rtslib"))
    monkeypatch.setattr(hypothesis_cache.importlib, "import_module", fake_import)
    monkeypatch.setattr(hypothesis_cache.pkgutil, "walk_packages", fake_walk)
    monkeypatch.setattr(hypothesis_cache, "PARTS", ("sim", "rig"))
    hypothesis_cache.import_everything()
    assert walked == [
        (["/src/scsi_pr.sim"], "scsi_pr.sim."),
        (["/src/scsi_pr.rig"], "scsi_pr.rig."),
    ]
    assert imported == [
        "scsi_pr.sim", "scsi_pr.sim.a", "scsi_pr.rig", "scsi_pr.rig.a", "rtslib", "pyudev",
    ]  # fmt: skip


def test_without_a_storage_directory_set_the_child_looks_where_hypothesis_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hypothesis_cache, "import_everything", lambda: None)
    monkeypatch.setattr(hypothesis_cache, "run_examples", lambda: None)
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".hypothesis" / "constants").mkdir(parents=True)
    (tmp_path / ".hypothesis" / "constants" / "0123456789abcdef").write_text("[1]")
    assert hypothesis_cache.main() == 0
