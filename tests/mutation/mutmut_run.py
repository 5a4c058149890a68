"""Driving mutmut 3 in a stage (``mutation.stage``): make the mutants, list them, run some or all,
read each verdict back and say what a mutant changed, as file:line and the line before/after.

Why mutmut 3 and not cosmic-ray: both were tried on this checkout. cosmic-ray rewrites the
source files in place and runs one test command per mutant; with no per-mutant test selection
every one of the ~3,600 mutants costs the whole 13 s selection (about 13 hours on two cores),
and in-place edits of a checkout other people test from are unsafe. mutmut 3 mutates a copy
(``mutants/``), records which tests reach which function (trampolines) and forks a worker per
mutant that runs only those tests, fastest first, stopping at the first failure: the whole of
``sim/`` and ``helper/proto/`` takes an hour or more on two busy cores, a sample seconds per
mutant. Its one
snag, the package-dir mapping, is what the stage undoes.

Verdicts are read from mutmut's ``*.meta`` files (exit code per mutant) rather than its
terminal output; the generation step calls the functions ``mutmut run`` starts with, which is
why pyproject pins mutmut to one minor version.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mutation.errors import MutationError

#: mutmut's exit-code verdicts (mutmut.stats.status_by_exit_code) folded into three answers:
#: the tests noticed the mutant, they did not, or mutmut could not tell.
KILLED, SURVIVED, UNCLEAR = "killed", "survived", "unclear"
_VERDICT = {1: KILLED, 3: KILLED, 37: KILLED, -24: KILLED, 24: KILLED, 36: KILLED, 152: KILLED}
_VERDICT |= {255: KILLED, -11: KILLED, -9: KILLED, 0: SURVIVED, 5: SURVIVED, 33: SURVIVED}
#: exit codes meaning "no test reaches this code": a survivor, but worth saying so
NO_TESTS = frozenset({5, 33})
TIMEOUTS = frozenset({-24, 24, 36, 152, 255})
CLASS_SEPARATOR = "\u01c1"  # mutmut's "ǁ" between class and method in a mangled name
#: the suffix mutmut gives each copy of a function (``f__mutmut_orig``, ``f__mutmut_7``)
_MANGLED = re.compile(r"__mutmut_(?:orig|\d+)\b")

# The first steps of ``mutmut run`` (mutmut 3.8 __main__._run): copy, then make every mutant.
_GENERATE = """
import sys
from mutmut.__main__ import (copy_also_copy_files, copy_src_dir, create_mutants,
    set_mutant_under_test, setup_source_paths)
set_mutant_under_test("mutant_generation")
copy_src_dir(); copy_also_copy_files(); setup_source_paths()
create_mutants(int(sys.argv[1]))
"""


class MutmutError(MutationError):
    """mutmut is missing, failed, or left results this driver cannot read."""


@dataclass(frozen=True)
class Mutant:
    """One mutant as a person reads it: where, and the line before and after."""

    name: str
    file: str  # checkout-relative once the caller maps it back (stage-relative here)
    line: int
    function: str  # ``Class.method`` or ``function``
    original: str
    mutated: str


def available() -> bool:
    return importlib.util.find_spec("mutmut") is not None


def _mutmut(stage: Path, args: list[str], log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", *args], cwd=stage, stdout=out, stderr=out
        )
    if done.returncode != 0:
        tail = log.read_bytes()[-3000:].decode(errors="replace").replace("\r", "\n")
        raise MutmutError(f"mutmut {args[0]} exited {done.returncode}; log {log}:\n{tail}")


def generate(stage: Path, jobs: int, log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(
            [sys.executable, "-c", _GENERATE, str(jobs)], cwd=stage, stdout=out, stderr=out
        )
    if done.returncode != 0:
        raise MutmutError(f"generating mutants failed (exit {done.returncode}); see {log}")


def run(stage: Path, names: list[str] | None, jobs: int, log: Path) -> None:
    """Run the named mutants (all when ``names`` is None): stats, clean run, mutants."""
    _mutmut(stage, ["run", "--max-children", str(jobs), *(names or [])], log)


def _meta_files(stage: Path) -> list[Path]:
    return sorted((stage / "mutants").rglob("*.py.meta"))


def verdicts(stage: Path) -> dict[str, tuple[str, int | None]]:
    """Every mutant's (stage-relative source file, exit code); None = not run."""
    found: dict[str, tuple[str, int | None]] = {}
    for meta in _meta_files(stage):
        source = str(meta.relative_to(stage / "mutants"))[: -len(".meta")]
        try:
            codes = json.loads(meta.read_text())["exit_code_by_key"]
        except (OSError, ValueError, KeyError) as e:
            raise MutmutError(f"{meta}: unreadable mutmut results") from e
        for name, code in codes.items():
            found[name] = (source, code)
    return found


def verdict(code: int | None) -> str:
    return _VERDICT.get(code, UNCLEAR) if code is not None else UNCLEAR


def function_of(name: str) -> str:
    """``pkg.mod.xǁClassǁmethod__mutmut_3`` -> ``Class.method``; ``pkg.mod.x_f__mutmut_1`` ->
    ``f``."""
    local = name.partition("__mutmut_")[0].rpartition(".")[2]
    if CLASS_SEPARATOR in local:
        _, cls, method = local.split(CLASS_SEPARATOR, 2)
        return f"{cls}.{method}"
    return local.removeprefix("x_")


def describe(stage: Path, source: str, name: str) -> Mutant:
    """Compare the mutant's function with mutmut's copy of the original (both live in the
    mutated file, located by the ``.spans`` file): the first line that differs, and its line
    number in the original source."""
    mutated_file = stage / "mutants" / source
    try:
        spans = json.loads(Path(str(mutated_file) + ".spans").read_text())["spans"]
        lines = mutated_file.read_text().splitlines()
    except (OSError, ValueError, KeyError) as e:
        raise MutmutError(f"{mutated_file}: no spans for {name}") from e
    local = name.rpartition(".")[2]
    orig_key = local.partition("__mutmut_")[0] + "__mutmut_orig"
    if local not in spans or orig_key not in spans:
        raise MutmutError(f"{name}: not in {mutated_file}.spans")

    def text(key: str) -> list[str]:
        start, end = spans[key]
        return [_MANGLED.sub("", line) for line in lines[start - 1 : end]]

    before, after = text(orig_key), text(local)
    index = next(
        (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
        min(len(before), len(after)),
    )
    original = before[index].strip() if index < len(before) else ""
    mutated = after[index].strip() if index < len(after) else ""
    return Mutant(
        name,
        source,
        _source_line(stage / source, function_of(name), before, index),
        function_of(name),
        original,
        mutated,
    )


def _source_line(path: Path, function: str, before: list[str], index: int) -> int:
    """Line number in the unmutated source of line ``index`` of mutmut's copy of ``function``
    (whose first line is the ``def``); 0 if the source does not have it."""
    try:
        source = path.read_text().splitlines()
    except OSError:
        return 0
    name = function.rpartition(".")[2]
    starts = [
        n
        for n, line in enumerate(source, 1)
        if line.lstrip().startswith((f"def {name}(", f"async def {name}("))
    ]
    first = next((i for i, line in enumerate(before) if line.lstrip().startswith("def ")), 0)
    for start in starts:
        at = start + index - first
        if 0 < at <= len(source) and source[at - 1].strip() == before[index].strip():
            return at
    return starts[0] + index - first if starts else 0
