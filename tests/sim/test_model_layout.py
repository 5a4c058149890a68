"""The model's own house rules, checked on its source: its command handlers depend on the declared
LU state rather than on ``device``, and its errors are SimErrors. (Sans-IO imports and module
sizes are checked for every part in tests/packaging/test_layout.py.)"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import scsi_pr.sim
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.errors import SimError
from scsi_pr.sim.lu_state import LuState

SIM = Path(scsi_pr.sim.__file__).parent
MODULES = sorted(SIM.glob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


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
