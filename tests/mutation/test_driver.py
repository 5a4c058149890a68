"""The mutation driver's own seams, without running mutmut: the stage's path mapping, the
equivalents file, the sample, and reading a mutant back from mutmut's files."""

from __future__ import annotations

import functools
import json
import sys
import types
from pathlib import Path

import pytest

from mutation import equivalents as eq
from mutation import mutmut_run as mm
from mutation import report, stage
from mutation.__main__ import ROOT, sample_names


@pytest.mark.parametrize(
    ("checkout", "staged"),
    [
        ("sim/", "scsi_pr/sim"),
        ("sim/pr_out.py", "scsi_pr/sim/pr_out.py"),
        ("helper/proto/", "scsi_pr/helper/proto"),
        ("helper/proto/events.py", "scsi_pr/helper/proto/events.py"),
        ("scsi_pr/__init__.py", "scsi_pr/__init__.py"),
    ],
)
def test_stage_undoes_the_package_dir_mapping(checkout: str, staged: str) -> None:
    assert stage.stage_path(ROOT, checkout) == staged
    if not checkout.endswith("/"):
        assert stage.checkout_path(ROOT, staged) == checkout


def test_paths_outside_the_package_are_refused() -> None:
    with pytest.raises(stage.StageError):
        stage.stage_path(ROOT, "docs/model.md")


@pytest.mark.parametrize(
    ("targets", "extra"),
    [
        (["sim/", "helper/proto/"], ()),
        (["target/proto/framer.py"], stage.TARGET_PROTO_TESTS),
        (["target/server.py"], stage.TARGET_PROTO_TESTS + stage.TARGET_EDGE_TESTS),
        (["target/"], stage.TARGET_PROTO_TESTS + stage.TARGET_EDGE_TESTS),
        (["sim/", "target/proto/", "target/lus.py"],
         stage.TARGET_PROTO_TESTS + stage.TARGET_EDGE_TESTS),
        (["helper/systemd.py", "helper/main.py"],  # a test module's other parts with it
         ("tests/helper/test_systemd.py", "tests/helper/test_main.py",
          "tests/helper/test_main_run.py")),
        (["rig/command_thread.py", "rig/vm.py"], ("tests/rig/test_command_thread.py",)),
        (["rig/guest/snapshot.py", "rig/guest/cpio.py"], ("tests/rig/test_guest_snapshot.py",)),
        (["rig/guest_e2e/booted.py"], ("tests/rig/test_guest_e2e_booted.py",)),
        (["helper/proto/"], ()),
        (["helper/executors/sim.py"],
         ("tests/helper/test_executors_sim.py", "tests/helper/test_sim_profile.py")),
        (["helper/executors/block_pr.py", "helper/executors/ioctl.py"],
         ("tests/helper/test_executors_block_pr.py", "tests/helper/test_executors_ioctl.py",
          "tests/helper/test_ioctl_backend.py")),  # named once
        (["rig/scenarios/fileread.py"], stage.TESTS_ELSEWHERE["rig/scenarios"]),
        (["helper/persist/sense.py"],  # its own name first, then its folder's, named once
         ("tests/helper/test_persist_sense.py",
          *(t for t in stage.TESTS_ELSEWHERE["helper/persist"]
            if t != "tests/helper/test_persist_sense.py"))),
    ],
)  # fmt: skip
def test_the_target_s_tests_judge_only_its_mutants(targets: list[str], extra: tuple) -> None:
    """A helper or rig module's own test module for its mutants; sockets and live servers only for
    the target's edge; the sans-IO core's own tests for any path under ``target/``; none of
    these for the model's mutants (they would only cost time)."""
    assert stage.tests_for(targets) == stage.TEST_SELECTION + extra
    assert all((ROOT / t).exists() for t in stage.tests_for(targets))


def test_mutate_patterns() -> None:
    assert stage.mutate_patterns(ROOT, ["sim/", "helper/proto", "sim/pr_out.py"]) == [
        "scsi_pr/sim/*",
        "scsi_pr/helper/proto/*",
        "scsi_pr/sim/pr_out.py",
    ]


def test_stage_holds_the_package_tests_and_config(tmp_path: Path) -> None:
    stage.build(ROOT, tmp_path, ["sim/"])
    assert (tmp_path / "scsi_pr" / "sim" / "pr_out.py").read_bytes() == (
        ROOT / "sim" / "pr_out.py"
    ).read_bytes()
    assert (tmp_path / "scsi_pr" / "helper" / "proto" / "events.py").is_file()
    assert (tmp_path / "tests" / "conformance" / "conftest.py").is_file()
    assert not (tmp_path / "tests" / "mutation").exists()
    assert (tmp_path / "docs" / "helper.md").read_bytes() == (
        ROOT / "docs" / "helper.md"
    ).read_bytes()
    config = (tmp_path / "setup.cfg").read_text()
    assert "only_mutate =\n    scsi_pr/sim/*\n" in config
    assert "--hypothesis-seed=0\nalso_copy" in config  # and nothing for sim/ after it
    assert "also_copy =\n    benchmarks\n    docs\n    scripts\n" in config
    assert (tmp_path / "scripts" / "sg_persist-via-helper").read_bytes() == (
        ROOT / "scripts" / "sg_persist-via-helper"
    ).read_bytes()
    assert "deadline=None" in (tmp_path / "tests" / "conftest.py").read_text()


def test_the_stage_empties_the_package_memos_before_each_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A memo the clean run filled would answer for a mutant of the code that fills it."""
    calls: list[int] = []

    @functools.cache
    def memo(x: int) -> int:
        calls.append(x)
        return x

    class Lookup:
        @functools.lru_cache(maxsize=4)  # noqa: B019 - as helper/simserve.py's LU cache
        def find(self, x: int) -> int:
            calls.append(-x)
            return x

    probe = types.ModuleType("scsi_pr._memo_probe")
    # a class with the attributes is not a memo: the stage must not call it
    probe.memo, probe.Kind = memo, type("Kind", (), {"cache_info": 0, "cache_clear": 0})  # type: ignore[attr-defined]
    probe.Lookup = Lookup  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, probe.__name__, probe)
    namespace: dict[str, object] = {}
    exec(stage.STAGE_CONFTEST, namespace)  # the stage conftest as pytest runs it
    lookup = Lookup()
    memo(1), memo(1), lookup.find(2), lookup.find(2)
    assert calls == [1, -2]
    namespace["clear_memos"]()  # type: ignore[operator]
    memo(1), lookup.find(2)
    assert calls == [1, -2, 1, -2]


def test_equivalents_file_is_well_formed() -> None:
    for entry in eq.load():
        assert entry.reason, entry
        if isinstance(entry, eq.Equivalent):
            assert (ROOT / entry.file).is_file(), entry


def test_equivalent_rule_replaces_one_occurrence() -> None:
    rule = eq.EquivalentRule(', "big")', ", )", "default byteorder")
    line = 'a(x, "big") if c else a(y, "big")'
    assert rule.matches("f", "g", line, 'a(x, ) if c else a(y, "big")')
    assert rule.matches("f", "g", line, 'a(x, "big") if c else a(y, )')
    assert not rule.matches("f", "g", line, "a(x, ) if c else a(y, )")
    assert not rule.matches("f", "g", line, 'a(x, "BIG") if c else a(y, "big")')


def test_equivalent_matches_file_function_and_text(tmp_path: Path) -> None:
    path = tmp_path / "eq.toml"
    path.write_text(
        '[[equivalent]]\nfile = "sim/x.py"\nfunction = "C.f"\noriginal = "a = 1"\n'
        'mutated = "a = 2"\nreason = "a is never read"\n'
    )
    entries = eq.load(path)
    assert eq.find(entries, "sim/x.py", "C.f", "  a = 1", "a = 2 ") == entries[0]
    assert eq.find(entries, "sim/x.py", "C.g", "a = 1", "a = 2") is None
    path.write_text('[[equivalent]]\nfile = "sim/x.py"\nreason = " "\n')
    with pytest.raises(eq.EquivalentsError):
        eq.load(path)


def test_sample_is_reproducible() -> None:
    names = [f"m{i}" for i in range(100)]
    assert sample_names(names, 10, 3) == sample_names(list(reversed(names)), 10, 3)
    assert sample_names(names, 10, 3) != sample_names(names, 10, 4)
    assert sample_names(names, None, 3) is None and sample_names(names, 100, 3) is None


def test_mutant_read_back_from_mutmut_files(tmp_path: Path) -> None:
    """A mutated file as mutmut writes it (the original and the mutant side by side, located by
    ``.spans``) gives file, function, line and the line before and after."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("class K:\n    def f(self):\n        return 1\n")
    mutated = tmp_path / "mutants" / "pkg" / "m.py"
    mutated.parent.mkdir(parents=True)
    mutated.write_text(
        "def x\u01c1K\u01c1f__mutmut_orig(self):\n    return 1\n"
        "def x\u01c1K\u01c1f__mutmut_1(self):\n    return 2\n"
    )
    spans = {"x\u01c1K\u01c1f__mutmut_orig": [1, 2], "x\u01c1K\u01c1f__mutmut_1": [3, 4]}
    Path(str(mutated) + ".spans").write_text(json.dumps({"spans": spans}))
    name = "pkg.m.x\u01c1K\u01c1f__mutmut_1"
    Path(str(mutated) + ".meta").write_text(json.dumps({"exit_code_by_key": {name: 0}}))
    assert mm.verdicts(tmp_path) == {name: ("pkg/m.py", 0)}
    assert mm.describe(tmp_path, "pkg/m.py", name) == mm.Mutant(
        name, "pkg/m.py", 3, "K.f", "return 1", "return 2"
    )
    assert mm.function_of("pkg.m.x_g__mutmut_4") == "g"


def test_verdicts_fold_mutmut_exit_codes() -> None:
    assert [mm.verdict(c) for c in (1, 3, 24, 0, 33, None, 2)] == [
        mm.KILLED,
        mm.KILLED,
        mm.KILLED,
        mm.SURVIVED,
        mm.SURVIVED,
        mm.UNCLEAR,
        mm.UNCLEAR,
    ]


def test_score_leaves_equivalents_out() -> None:
    tally = report.Tally("sim/", total=10, killed=8, equivalent=2)
    assert tally.score == 100.0
    assert report.Tally("sim/", total=4, killed=1).score == 25.0


def test_scenario_mutants_skip_the_helper_process_cases() -> None:
    """The helper-sim cases run the checkout in another process: for ``rig/scenarios/`` they
    are deselected; every other target keeps the plain arguments."""
    assert stage.args_for(["rig/scenarios/engine.py"]) == (
        *stage.PYTEST_ARGS,
        "-k",
        "not helper-sim",
    )
    assert stage.args_for(["rig/scenarios/", "rig/scenarios/cli.py"]) == (
        *stage.PYTEST_ARGS,
        "-k",
        "not helper-sim",
    )
    assert stage.args_for(["sim/", "rig/scenarios_x.py"]) == stage.PYTEST_ARGS
