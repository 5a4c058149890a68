"""The staging tree mutmut works in: the checkout's package laid out the way it is imported.

mutmut 3 names a module after its path below the folder it runs in (``./``, ``src/`` or
``source/``) and matches the tests' trampoline hits against that name. Our package-dir mapping
(pyproject.toml: ``scsi_pr.sim`` -> ``sim/``) breaks that: mutmut would see ``sim.pr_out`` while
every test imports ``scsi_pr.sim.pr_out``, and every mutant would be reported "no tests". The
stage undoes the mapping on disk (``scsi_pr/sim/pr_out.py``); mutmut then copies it into
``mutants/`` and puts that folder first on ``sys.path``, ahead of the editable install's finder
(a meta-path finder that comes after the path finder), so the tests import the mutated copy.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from mutation.errors import MutationError

#: The fast, backend-independent tests every mutant is checked against (the model, the
#: conformance suite on the model, the helper's wire protocol). They run in seconds; the
#: tiers that need processes, sockets or a VM stay out.
TEST_SELECTION = (
    "tests/sim",
    "tests/conformance",
    "tests/helper/test_proto.py",
    "tests/helper/test_proto_client.py",
    "tests/helper/test_status.py",
)
#: The sans-IO tests of the iSCSI target's protocol core, run only when a path under
#: ``target/proto/`` is mutated (the live-server tests bind sockets and take minutes).
TARGET_PROTO_TESTS = tuple(
    f"tests/target/test_{name}.py"
    for name in ("chap", "connection", "datain", "discovery", "errors", "framer", "full_feature",
                 "full_feature_errors", "login", "login_errors", "negotiation", "pdus",
                 "sequencing", "tasks", "text", "transfer")
)  # fmt: skip
#: The tests of the target's I/O edge (the asyncio server, its sessions, task management and
#: LUs), with the protocol core's, for a path under ``target/`` outside ``proto/``: they bind
#: sockets on the host and take seconds; libiscsi's suites (half a minute) and the layout checks
#: (they read the checkout, not the stage) stay out.
TARGET_EDGE_TESTS = tuple(
    f"tests/target/test_{name}.py"
    for name in ("server", "handler", "task_management", "sessions", "config", "operator_log",
                 "live_login", "lus", "target_profile", "fuzz_live", "target_cli")
)  # fmt: skip
#: A helper or rig module's own test module split in parts: the other parts judge its mutants too.
OWN_TEST_PARTS = {
    "tests/helper/test_daemon.py": (
        "tests/helper/test_daemon_options.py",
        "tests/helper/test_daemon_server.py",
    ),
    "tests/helper/test_main.py": ("tests/helper/test_main_run.py",),
    "tests/helper/test_session.py": ("tests/helper/test_session_paths.py",),
    "tests/helper/test_simserve.py": (
        "tests/helper/test_simserve_commit.py",
        "tests/helper/test_simserve_locks.py",
    ),
}
#: A module (or a folder's modules) whose tests live under other names than its own
#: (``test_<module>.py``): they judge its mutants too.
TESTS_ELSEWHERE = {
    "helper/executors/sim.py": ("tests/helper/test_sim_profile.py",),
    "helper/executors/block_pr.py": ("tests/helper/test_ioctl_backend.py",),
    "helper/executors/ioctl.py": ("tests/helper/test_ioctl_backend.py",),
    "helper/executors/multipath.py": ("tests/helper/test_multipath.py",),
    "helper/executors/mpath_lib.py": ("tests/helper/test_mpath_lib.py",),
    "helper/persist": (  # scsi-pr persist, sg_persist's command line
        "tests/helper/test_persist_build.py",
        "tests/helper/test_persist_cli.py",
        "tests/helper/test_persist_command.py",
        "tests/helper/test_persist_execute.py",
        "tests/helper/test_persist_exit_codes.py",
        "tests/helper/test_persist_hexdump.py",
        "tests/helper/test_persist_hostile.py",
        "tests/helper/test_persist_numbers.py",
        "tests/helper/test_persist_options.py",
        "tests/helper/test_persist_oracle.py",
        "tests/helper/test_persist_outcome.py",
        "tests/helper/test_persist_pr_type.py",
        "tests/helper/test_persist_prin.py",
        "tests/helper/test_persist_prout.py",
        "tests/helper/test_persist_sense.py",
        "tests/helper/test_persist_sim.py",
        "tests/helper/test_persist_transport.py",
        "tests/helper/test_persist_transport_id.py",
    ),
    "helper/executors/sg.py": ("tests/rig/test_sg.py", "tests/helper/test_ioctl_backend.py"),
    "rig/vm_tier.py": (
        "tests/rig/test_vm_tier_driver.py",
        "tests/rig/test_vm_tier_driver_errors.py",
        "tests/rig/test_vm_tier_paths.py",
        "tests/rig/test_vm_tier_vms.py",
    ),
    "rig/vm_tier_results.py": ("tests/rig/test_vm_tier_driver.py",),
    "rig/scenarios": (  # the scenario engine and files; test_vm.py needs the VM tier
        "tests/scenarios/test_backends.py",
        "tests/scenarios/test_cli.py",
        "tests/scenarios/test_docs.py",
        "tests/scenarios/test_engine.py",
        "tests/scenarios/test_engine_decisions.py",
        "tests/scenarios/test_fileformat_values.py",
        "tests/scenarios/test_fileread_places.py",
        "tests/scenarios/test_files.py",
        "tests/scenarios/test_files_hostile.py",
        "tests/scenarios/test_profile.py",
        "tests/scenarios/test_render_styles.py",
        "tests/scenarios/test_scenarios.py",
    ),
    "helper/options.py": (
        "tests/helper/test_getopt.py",
        "tests/helper/test_cpus.py",
        "tests/helper/test_sim_profile.py",
    ),
    "helper/unix_io.py": ("tests/helper/test_session.py", "tests/helper/test_session_paths.py"),
    # the differential with LIO: its host tests drive it on the model against the model
    "rig/lockstep": (
        "tests/rig/test_lockstep.py",
        "tests/rig/test_lockstep_hostile.py",
        "tests/rig/test_lockstep_report.py",
        "tests/rig/test_lockstep_session.py",
        "tests/rig/test_lockstep_cli.py",
    ),
}
#: What the mutants are made of unless the caller names paths (checkout-relative).
DEFAULT_TARGETS = ("sim/", "helper/proto/", "helper/executors/status.py")
#: pytest arguments for every run: hypothesis with a fixed seed, so a mutant's verdict does not
#: depend on luck, and no cache writes.
PYTEST_ARGS = ("-p", "no:cacheprovider", "--hypothesis-seed=0")
#: More pytest arguments for a target's run. The scenario tests also run each scenario on
#: ``helper-sim``, whose helper processes import the checkout, not the mutant: those cases
#: cannot tell a mutant of ``rig/scenarios/`` apart, and they made its run four times longer.
TARGET_PYTEST_ARGS = {"rig/scenarios": ("-k", "not helper-sim")}
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".hypothesis", ".pytest_cache")
#: The stage's own ``tests/conftest.py``: hypothesis without deadlines (traced calls under
#: mutmut run several times slower, and a deadline would "kill" a mutant or fail the clean
#: run by timing alone) and without its example database (a failure one mutant found must
#: not be replayed against the next); and the package's ``functools`` memos emptied before
#: every test (filled by an earlier test, or by mutmut's clean run in the process every
#: mutant's run forks from, they would answer for the mutated code that fills them).
STAGE_CONFTEST = """\
import sys

import pytest
from hypothesis import settings

settings.register_profile("mutation", deadline=None, database=None)
settings.load_profile("mutation")


def clear_memos() -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("scsi_pr."):
            for value in list(vars(module).values()):
                # a module's memos, and its classes' (a memoised method)
                found = list(vars(value).values()) if isinstance(value, type) else [value]
                for memo in found:
                    if hasattr(memo, "cache_info") and not isinstance(memo, type):
                        memo.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_memos() -> None:
    clear_memos()
"""


class StageError(MutationError):
    """A path to mutate that the package-dir mapping does not cover."""


def package_dirs(root: Path) -> dict[str, str]:
    """pyproject's ``[tool.setuptools] package-dir``: import package -> checkout folder."""
    with open(root / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {pkg: folder.rstrip("/") for pkg, folder in mapping.items()}


def stage_path(root: Path, path: str) -> str:
    """Checkout path (``sim/pr_out.py``, ``helper/proto/``) -> its place in the stage."""
    clean = path.strip("/")
    best = None
    for pkg, folder in package_dirs(root).items():
        if (clean == folder or clean.startswith(folder + "/")) and (
            best is None or len(folder) > len(best[1])
        ):
            best = (pkg, folder)
    if best is None:
        raise StageError(f"{path}: not inside a folder of pyproject's package-dir")
    pkg, folder = best
    return pkg.replace(".", "/") + clean[len(folder) :]


def checkout_path(root: Path, staged: str) -> str:
    """Inverse of ``stage_path`` for a file: ``scsi_pr/sim/pr_out.py`` -> ``sim/pr_out.py``."""
    best = None
    for pkg, folder in package_dirs(root).items():
        prefix = pkg.replace(".", "/")
        if staged.startswith(prefix + "/") and (best is None or len(prefix) > len(best[0])):
            best = (prefix, folder)
    if best is None:
        return staged
    prefix, folder = best
    return folder + staged[len(prefix) :]


def mutate_patterns(root: Path, targets: Iterable[str]) -> list[str]:
    """mutmut ``only_mutate`` globs for checkout paths (a folder means every file below it)."""
    patterns = []
    for target in targets:
        staged = stage_path(root, target)
        is_dir = target.endswith("/") or (root / target).is_dir()
        patterns.append(staged.rstrip("/") + "/*" if is_dir else staged)
    return patterns


#: Folders of the checkout the tests read besides the package and themselves: the docs (some
#: tests hold them to the code, e.g. every path limit named in docs/helper.md) and the scripts
#: (a test runs ``scripts/sg_persist-via-helper``).
ALSO_COPIED = ("benchmarks", "docs", "scripts")  # tests/bench imports benchmarks


def build(root: Path, stage: Path, targets: Sequence[str]) -> None:
    """Copy the package (mapping undone), the tests and ``ALSO_COPIED`` into ``stage`` and
    write mutmut's configuration there (``setup.cfg``: the copied pyproject.toml keeps its
    pytest settings and has no ``[tool.mutmut]``, so mutmut falls back to ``setup.cfg``)."""
    mapping = package_dirs(root)
    for pkg in sorted(mapping, key=len):  # parents first: the root package holds the others
        shutil.copytree(
            root / mapping[pkg], stage / pkg.replace(".", "/"), ignore=_IGNORE, dirs_exist_ok=True
        )
    shutil.copytree(root / "tests", stage / "tests", ignore=_IGNORE)
    shutil.rmtree(stage / "tests" / "mutation")  # never mutation-test the mutation tests
    for folder in ALSO_COPIED:
        shutil.copytree(root / folder, stage / folder, ignore=_IGNORE)
    if (stage / "tests" / "conftest.py").exists():
        raise StageError("tests/conftest.py exists: the stage's hypothesis profile needs a home")
    (stage / "tests" / "conftest.py").write_text(STAGE_CONFTEST)
    shutil.copy2(root / "pyproject.toml", stage / "pyproject.toml")
    (stage / "setup.cfg").write_text(
        _config(mapping, mutate_patterns(root, targets), tests_for(targets), args_for(targets))
    )


def tests_for(targets: Iterable[str]) -> tuple[str, ...]:
    """The tests that judge mutants of ``targets``."""
    paths = [t.strip("/") for t in targets]
    if any(p == "target" or (p.startswith("target/") and not p.startswith("target/proto"))
           for p in paths):  # fmt: skip
        return TEST_SELECTION + TARGET_PROTO_TESTS + TARGET_EDGE_TESTS
    if any(p.startswith("target/proto") for p in paths):
        return TEST_SELECTION + TARGET_PROTO_TESTS
    # a helper or rig module with a test module of its own name (helper/systemd.py:
    # tests/helper/test_systemd.py, rig/command_thread.py: tests/rig/test_command_thread.py,
    # rig/guest/snapshot.py: tests/rig/test_guest_snapshot.py) is judged by that too, and by
    # that test module's other parts (OWN_TEST_PARTS), and by the tests it has elsewhere
    # (TESTS_ELSEWHERE)
    own = [f"tests/{part}/test_{name.removesuffix('.py').replace('/', '_')}.py"
           for part, _, name in (p.partition("/") for p in paths)
           if part in ("helper", "rig") and name.endswith(".py")]  # fmt: skip
    own += [t for o in own for t in OWN_TEST_PARTS.get(o, ())]
    own += [t for p in paths for key, tests in TESTS_ELSEWHERE.items()
            if p == key or p.startswith(key + "/") for t in tests]  # fmt: skip
    checkout = Path(__file__).resolve().parents[2]
    return TEST_SELECTION + tuple(
        dict.fromkeys(t for t in own if t not in TEST_SELECTION and (checkout / t).is_file())
    )


def args_for(targets: Iterable[str]) -> tuple[str, ...]:
    """pytest's arguments for mutants of ``targets``: ``PYTEST_ARGS`` and any of
    ``TARGET_PYTEST_ARGS`` (once, for the first target under its key)."""
    paths = [t.strip("/") for t in targets]
    extra = [args for key, args in TARGET_PYTEST_ARGS.items()
             if any(p == key or p.startswith(key + "/") for p in paths)]  # fmt: skip
    return PYTEST_ARGS + tuple(a for args in extra for a in args)


def _config(
    mapping: dict[str, str], patterns: list[str], tests: Iterable[str], args: Iterable[str]
) -> str:
    root_package = min(mapping, key=len).replace(".", "/")

    def listing(values: Iterable[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    return (
        "[mutmut]\n"
        f"source_paths ={listing([root_package])}\n"
        f"only_mutate ={listing(patterns)}\n"
        f"pytest_add_cli_args_test_selection ={listing(tests)}\n"
        f"pytest_add_cli_args ={listing(args)}\n"
        f"also_copy ={listing(ALSO_COPIED)}\n"  # mutmut's own copy of the stage takes them too
    )
