"""The layout is the product's map: checks that keep it one.

One concept per module (none over the size where they start to mix), the sans-IO cores free of
I/O, every package folder shipped in the wheel, and the shipped systemd units that fit the
daemons.
"""

from __future__ import annotations

import ast
import configparser
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = {
    "sim": "scsi_pr.sim",
    "helper": "scsi_pr.helper",
    "rig": "scsi_pr.rig",
    "target": "scsi_pr.target",
}
MAX_MODULE_LINES = 500
#: modules whose import means I/O; the model and the wire codec decide, the edges act
IO_MODULES = {"os", "io", "pathlib", "shutil", "socket", "fcntl", "asyncio", "subprocess", "select",
              "selectors", "threading", "time", "signal", "tempfile"}  # fmt: skip
PURE = ("sim", "helper/proto", "target/proto")


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("part", PARTS)
def test_no_module_is_over_the_limit(part: str) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules(part)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


@pytest.mark.parametrize("folder", PURE)
def test_the_sans_io_cores_import_no_io(folder: str) -> None:
    found = []
    for path in _modules(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} open()")
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in IO_MODULES
            ]
    assert found == []


def test_every_package_folder_is_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"scsi_pr"}
    for folder, name in PARTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed
    assert {k: v for k, v in config["package-dir"].items() if k != "scsi_pr"} == {
        v: k for k, v in PARTS.items()
    }


ROOT_ERRORS = {
    "sim": "scsi_pr.sim.errors.SimError",
    "helper": "scsi_pr.helper.errors.HelperError",
    "rig": "scsi_pr.rig.errors.RigError",
    "target": "scsi_pr.target.errors.TargetError",
}
#: a BaseException on purpose: nothing in a test (nor hypothesis' shrinker) may swallow it
NOT_UNDER_THE_ROOT = {"scsi_pr.rig.pytest_plugin.DeadlineExceeded"}


def _resolve(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("part", PARTS)
def test_every_error_a_part_defines_is_under_its_root(part: str) -> None:
    root = _resolve(ROOT_ERRORS[part])
    strays = []
    for path in _modules(part):
        rel = path.relative_to(ROOT / part).with_suffix("")
        name = ".".join([PARTS[part], *rel.parts]).removesuffix(".__init__")
        if rel.name == "__main__":
            continue
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not issubclass(value, root)
                and f"{name}.{value.__qualname__}" not in NOT_UNDER_THE_ROOT
            ):
                strays.append(f"{name}.{value.__qualname__}")
    assert strays == []


@pytest.mark.parametrize("unit", ["scsi-pr-helper.service", "scsi-pr-target.service"])
def test_the_shipped_units_wait_for_ready(unit: str) -> None:
    """Both daemons notify, so their units are ``Type=notify``: with ``simple`` systemd would
    start what is ordered after them before they serve."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((ROOT / "systemd" / unit).read_text())
    assert parser["Service"]["Type"] == "notify"
