"""The codec stays sans-IO and its modules stay small (the house rules, for ``target/``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = {"os", "socket", "fcntl", "asyncio", "subprocess", "select", "selectors",
              "threading", "shutil", "tempfile", "io", "time"}  # fmt: skip
MODULES = sorted(p for p in (ROOT / "target").rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 500


@pytest.mark.parametrize("path", [p for p in MODULES if "proto" in p.parts], ids=lambda p: p.name)
def test_proto_imports_no_io(path: Path) -> None:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
            found.append(f"{node.lineno}: open()")
        found += [f"{node.lineno}: {n}" for n in names if n.split(".")[0] in IO_MODULES]
    assert found == []


def test_every_error_has_the_one_root() -> None:
    import importlib
    import inspect

    from scsi_pr.target.errors import TargetError

    errors = []
    for path in MODULES:
        name = "scsi_pr." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(name.removesuffix(".__init__"))
        errors += [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, Exception)
            and obj.__module__ == module.__name__
        ]
    assert errors and all(issubclass(e, TargetError) for e in errors)
