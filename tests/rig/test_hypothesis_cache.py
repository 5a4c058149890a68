"""Hypothesis's constants cache for the VM (``rig.hypothesis_cache``): filled on the host,
carried by the image without the rest of hypothesis's storage, found by the guest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scsi_pr.rig import hypothesis_cache, vm


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
