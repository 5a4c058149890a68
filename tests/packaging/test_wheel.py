"""The wheel as a user gets it: one top-level import package, its run-time files, and an
environment that is not this checkout.

Built once per session into a fresh venv outside the checkout (no editable finder, no ``tests/``
on the path), so a module that only works from a checkout fails here.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: pip and builds can be slow on a shared machine; these bound a hang, not the speed
PIP_DEADLINE = 900
RUN_DEADLINE = 300


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        # A clean environment: nothing of the checkout's venv or PYTHONPATH leaks in.
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.workdir),
        }
        return subprocess.run(
            list(argv), cwd=cwd or self.workdir, env=env, capture_output=True, text=True,
            timeout=RUN_DEADLINE, check=False,
        )  # fmt: skip


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_DEADLINE, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    _pip(Path(sys.executable), "wheel", "--no-deps", "-w", str(dist), str(ROOT))
    (wheel,) = dist.glob("scsi_pr-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    _pip(env_dir / "bin" / "python", "install", str(wheel), "pytest")
    work = base / "work"
    work.mkdir()
    yield Installed(wheel, env_dir, work)


def test_the_only_top_level_package_is_scsi_pr(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"scsi_pr"}


def test_every_package_and_runtime_file_is_in_the_wheel(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for part in ("sim", "helper", "rig"):
        for f in (ROOT / part).rglob("*"):
            if f.is_file() and f.suffix in (".py", ".sh") and "__pycache__" not in f.parts:
                assert f"scsi_pr/{f.relative_to(ROOT)}" in names, f


def test_a_scenario_runs_from_the_installed_wheel(installed: Installed) -> None:
    r = installed.run(installed.bin("scsi-pr"), "scenario", "fence-scsi", "--backend", "helper-sim")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout


def test_vm_check_finds_its_guest_script(installed: Installed) -> None:
    r = installed.run(installed.bin("scsi-pr"), "vm", "check")
    # 0: ready; 1: tools missing (named). 2 would be a broken installation (no guest script).
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert "guest script" not in r.stdout + r.stderr


def test_the_helper_and_python_m_entry_points(installed: Installed) -> None:
    r = installed.run(installed.bin("scsi-pr-helper"), "--help")
    assert r.returncode == 0 and "--socket" in r.stdout, r.stdout + r.stderr
    r = installed.run(installed.bin("python"), "-m", "scsi_pr.helper", "--version")
    assert r.returncode == 0 and r.stdout.startswith("scsi-pr-helper "), r.stdout + r.stderr
    r = installed.run(installed.bin("python"), "-m", "scsi_pr", "--help")
    assert r.returncode == 0 and "scenario" in r.stdout, r.stdout + r.stderr


def test_an_unrelated_project_with_its_own_sim_package_still_runs_pytest(
    installed: Installed, tmp_path: Path
) -> None:
    # Our pytest11 plugin loads into every pytest run of the environment: it must not claim
    # generic top-level names such as ``sim``.
    project = tmp_path / "other"
    (project / "sim").mkdir(parents=True)
    (project / "sim" / "__init__.py").write_text("")
    (project / "sim" / "device.py").write_text("class Thing:\n    answer = 42\n")
    (project / "test_other.py").write_text(
        "from sim.device import Thing\n\n\ndef test_thing():\n    assert Thing.answer == 42\n"
    )
    r = installed.run(installed.bin("python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      cwd=project)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
    # ... while our plugin is loaded there too
    assert (
        "--lio-test-timeout"
        in installed.run(installed.bin("python"), "-m", "pytest", "--help").stdout
    )
