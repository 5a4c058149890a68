"""The model's house rules, checked on its source: ``scsi_pr.sim`` is sans-IO, its command
handlers depend on the declared LU state rather than on ``device``, and every module stays
small enough to read."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import scsi_pr.sim
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.errors import SimError
from scsi_pr.sim.lu_state import LuState

SIM = Path(scsi_pr.sim.__file__).parent
MODULES = sorted(SIM.glob("*.py"))
#: modules that reach the outside world (files, sockets, processes, clocks, event loops)
IO_MODULES = {"os", "io", "pathlib", "shutil", "socket", "fcntl", "asyncio", "subprocess",
              "threading", "time", "select", "signal", "tempfile"}  # fmt: skip
MAX_LINES = 500


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_sim_is_sans_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    io = {n for n in _imports(path) if n.split(".")[0] in IO_MODULES}
    assert not io, f"{path.name} imports {sorted(io)}"
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "open" not in calls, f"{path.name} opens a file"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_sim_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_command_handlers_do_not_import_the_device() -> None:
    assert "scsi_pr.sim.device" not in _imports(SIM / "commands.py")
    assert "scsi_pr.sim.device" not in _imports(SIM / "lu_state.py")


def test_logical_unit_provides_the_state_the_handlers_use() -> None:
    assert isinstance(LogicalUnit(), LuState)


def test_every_error_the_model_defines_is_a_sim_error() -> None:
    found = []
    for path in MODULES:
        module = importlib.import_module(f"scsi_pr.sim.{path.stem}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.append(value)
                assert issubclass(value, SimError), f"{value.__qualname__} is not a SimError"
    assert len(found) >= 5  # SimError itself, TransportIdError, CommandTerminated, ...
