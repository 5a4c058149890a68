"""The backend plugin, driven through pytester on the in-process ``sim`` backend."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PROBE = """
import pytest

def test_probe(backend, initiators):
    assert backend.name == "{name}"
    assert [i.name for i in initiators] == [
        "naa.5001405000000001", "naa.5001405000000002", "naa.5001405000000003"]
    assert [i.relative_target_port for i in initiators] == [1, 2, 3]
"""


def test_default_backend_is_sim(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROBE.format(name="sim"))
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*scsi-pr backends: sim*", "*test_probe?sim? PASSED*"])


def test_env_selects_backends(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCSI_PR_BACKENDS", "sim,nonsense")
    pytester.makepyfile(PROBE.format(name="sim"))
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*SCSI_PR_BACKENDS: unknown backend(s) nonsense*"])


def test_unknown_option_value_is_rejected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROBE.format(name="sim"))
    result = pytester.runpytest_subprocess("--backend", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid choice: 'nope'*"])


UNAVAILABLE = """
def test_needs_lio(backend):
    raise AssertionError("must not run without LIO")
"""


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "errors")])
def test_unavailable_backend_skips_outside_ci_fails_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    """Not root / no LIO: a visible skip on a laptop, a failure in CI."""
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("SCSI_PR_LIO_UNAVAILABLE", "test: pretend there is no LIO")
    pytester.makepyfile(UNAVAILABLE)
    result = pytester.runpytest_subprocess("--backend", "lio", "-rs")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*backend lio unavailable: *"])


MARKERS = """
import pytest

@pytest.mark.deviates("sim", reason="pretend", clause="SPC-5 5.14.11.2")
def test_deviation(backend):
    assert False, "the deviating answer"

@pytest.mark.deviates("sim", reason="pretend")
def test_deviation_fixed(backend):
    pass

@pytest.mark.requires("power_cycle")
def test_power(backend):
    backend.power_cycle

@pytest.mark.requires("teleport")
def test_missing_capability(backend):
    raise AssertionError("must not run")
"""


def test_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKERS)
    result = pytester.runpytest_subprocess("-rxXs")
    # a deviation that stops deviating fails (strict), so a kernel fix is noticed
    result.assert_outcomes(xfailed=1, failed=1, passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*sim deviates: pretend (SPC-5 5.14.11.2)*", "*backend sim lacks teleport*"]
    )


DEVICE_LOG = """
import pytest
from scsi_pr.rig.backends import SimBackend

@pytest.fixture(autouse=True)
def logging_device(monkeypatch):
    monkeypatch.setattr(SimBackend, "device_log", lambda self: "READ(10) lba=0 by someone else")

def test_fails(backend):
    assert False, "the unit attention never came"

def test_passes(backend):
    pass
"""


def test_a_failed_test_shows_the_device_log_of_its_backend(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEVICE_LOG)
    result = pytester.runpytest_subprocess("-rA")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*device log (sim)*", "READ(10) lba=0 by someone else"])
    assert result.stdout.str().count("device log (sim)") == 1  # the passing test shows none


def test_deadline_interrupts_a_blocked_test_and_cannot_be_swallowed() -> None:
    import socket

    from scsi_pr.rig.pytest_plugin import DeadlineExceeded, _deadline

    a, b = socket.socketpair()
    with pytest.raises(DeadlineExceeded), _deadline(0.3):
        try:
            a.recv(1)  # blocks: nobody writes
        except Exception:  # what a careless test (or Hypothesis) would do
            pytest.fail("DeadlineExceeded must not be an Exception")
    a.close()
    b.close()


def test_deadline_follows_progress_a_long_test_whose_commands_complete_runs_on() -> None:
    # 1.2 s in all with a 0.3 s deadline, but a command completes every 0.1 s
    import time

    from scsi_pr.rig.pytest_plugin import _deadline
    from scsi_pr.rig.watchdog import note_progress

    with _deadline(0.3):
        for _ in range(12):
            time.sleep(0.1)
            note_progress()


def test_uses_backend_marker_selects_backend_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROBE.format(name="sim") + "\n\ndef test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-m", "uses_backend")
    result.assert_outcomes(passed=1, deselected=1)


@pytest.mark.parametrize(
    ("name", "limit"),
    [("lio", 240.0), ("helper-lio", 240.0), ("iscsi", 240.0), ("helper-iscsi", 240.0),
     ("sim", 0.0), ("helper-sim", 0.0), (None, 0.0)],
)  # fmt: skip
def test_every_real_kernel_backend_gets_a_per_test_deadline(name: str | None, limit: float) -> None:
    from scsi_pr.rig.pytest_plugin import per_test_deadline

    assert per_test_deadline(name, 240.0) == limit


def test_the_multipath_backends_tests_go_last(pytester: pytest.Pytester) -> None:
    """Its map stays up once built (multipathd's TEST UNIT READYs would take other backends'
    unit attentions): its tests move to the end, the ``multipath`` tests after them (they
    remove the map), nothing else changes order."""
    pytester.makepyfile(
        "import pytest\n\n\n@pytest.mark.multipath\ndef test_map():\n    pass\n\n\n"
        "def test_one(backend):\n    pass\n\n\ndef test_two(backend):\n    pass\n\n\n"
        "def test_plain():\n    pass\n"
    )
    args = ("--collect-only", "-q", "--backend", "helper-lio-mpath", "--backend", "sim")
    result = pytester.runpytest_subprocess(*args)
    ids = [line.split("::")[1] for line in result.stdout.lines if "::" in line]
    assert ids == [
        "test_one[sim]",
        "test_two[sim]",
        "test_plain",
        "test_one[helper-lio-mpath]",
        "test_two[helper-lio-mpath]",
        "test_map",  # the multipath tests remove the map the backend's tests share
    ]


def test_hypothesis_examples_have_no_wall_clock_deadline() -> None:
    """The plugin's profile: a loaded machine must not fail a property test (timings belong
    in scripts/bench)."""
    from hypothesis import settings

    assert settings.default.deadline is None
