"""pytest plugin: run the same device tests on every backend (``--backend sim|lio|…``).

Registered through the ``pytest11`` entry point, so any test that asks for the ``backend`` or
``initiators`` fixture is parametrised over the chosen backends without a conftest.

Where the backend names come from, strongest first: ``--backend`` (repeatable), the
``SCSI_PR_BACKENDS`` environment variable (comma separated), the ``scsi_pr_backends`` ini value,
then ``sim``.

A backend that cannot run here (no root, no LIO kernel) is skipped with its reason on a
developer's machine; with ``CI=true`` that is a failure instead, because a CI run that silently
skipped the real-kernel tier would look green while testing nothing.

Markers:

- ``requires(*capabilities)``: the test needs e.g. ``power_cycle``; backends without it skip
  (a visible skip with the reason: LIO in a VM cannot cut power to a ramdisk).
- ``deviates(*backends, reason=, clause=)``: that backend answers differently from SPC; the test
  becomes a strict xfail there, so a fixed kernel turns it into a failure we notice.
- ``lio_hangs(reason=)``: the test makes LIO hang (PREEMPT AND ABORT on tcm_loop). On LIO
  backends it runs only when ``--run-lio-hangs`` is given (the VM tier does so last, in a
  process of its own); if the LUN hung (a command timed out, or the backend says ``hung``)
  the outcome is xfail "LIO hangs", never a pass, whatever the test itself concluded. The
  model under a profile that reproduces the hang (``--profile lio-6.1``) is judged the same
  way; it never blocks, so it needs no ``--run-lio-hangs``.

``--profile NAME`` (default ``spc5``) is how the model answers on ``sim`` and ``helper-sim``
(``scsi_pr.sim.profiles``); the ``device_profile`` fixture gives a test the profile of the
device behind its backend: that one on the model's backends, LIO's for the running kernel on
LIO backends, ``spc5`` on our iSCSI target.

With ``SCSI_PR_RESULT_LOG=path`` every test outcome is appended to ``path`` as one JSON line
the moment it is known, so a run that LIO wedges still leaves its results behind; so are the
CPU seconds the run has used once it has collected and when it ends (``cpu_seconds``).

Every test that takes the ``backend`` fixture also gets the marker ``uses_backend``, so the VM
tier can select "every backend-independent test" with ``-m "uses_backend or vm"``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from scsi_pr.rig.backends import (
    BACKENDS,
    PROFILED_BACKENDS,
    Backend,
    BackendUnavailable,
    Initiator,
    open_backend,
)
from scsi_pr.rig.ci import in_ci
from scsi_pr.rig.watchdog import last_progress, note_progress
from scsi_pr.sim import profiles
from scsi_pr.sim.deviations import PREEMPT_AND_ABORT_STALLS
from scsi_pr.sim.profiles import Profile


def _no_hypothesis_deadlines() -> None:
    """Hypothesis fails an example that takes over 200 ms: a wall-clock limit, which a loaded
    machine breaks with nothing wrong (timings belong in ``scripts/bench``). Done at import,
    before any conftest, so a conftest loading a profile of its own still wins; nothing
    without hypothesis (a user's other project)."""
    try:
        from hypothesis import settings
    except ImportError:
        return
    settings.register_profile("scsi-pr", deadline=None)
    settings.load_profile("scsi-pr")


_no_hypothesis_deadlines()
ENV_BACKENDS = "SCSI_PR_BACKENDS"
ENV_RESULT_LOG = "SCSI_PR_RESULT_LOG"
DEFAULT_BACKENDS = ("sim",)
#: initiators every backend is opened with; tests use as many as they need from the front
DEFAULT_INITIATORS = 3
#: backends that run on LIO and therefore show its known defects
MULTIPATH_BACKEND = "helper-lio-mpath"
LIO_BACKENDS = frozenset({"lio", "helper-lio", "helper-lio-ioctl", MULTIPATH_BACKEND})
#: backends whose commands go through a real kernel (SG_IO): a command can block for good there,
#: so each test gets a deadline
KERNEL_BACKENDS = LIO_BACKENDS | {"iscsi", "helper-iscsi"}
LIO_HANGS = "LIO hangs"
#: a test on a real-kernel backend in which no command completes for this long fails
#: (``--lio-test-timeout``): the deadline follows progress, so a long test on a busy machine
#: runs on while its commands keep completing
DEFAULT_LIO_TEST_TIMEOUT = 240.0


class DeadlineExceeded(BaseException):
    """Raised by SIGALRM in a test on a real-kernel backend in which no command completed for
    ``--lio-test-timeout`` seconds.

    A BaseException, so no ``except Exception`` in the test (nor Hypothesis' shrinker, which
    would replay a slow test again and again) can swallow it.
    """


def _parse_names(text: str, source: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise pytest.UsageError(
            f"{source}: unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}"
        )
    return names


def selected_backends(config: pytest.Config) -> list[str]:
    """The backend names for this run, deduplicated in order (see module docstring)."""
    names: list[str] = config.getoption("scsi_pr_backends") or []
    if not names and os.environ.get(ENV_BACKENDS):
        names = _parse_names(os.environ[ENV_BACKENDS], f"${ENV_BACKENDS}")
    if not names:
        ini = config.getini("scsi_pr_backends")
        names = _parse_names(",".join(ini), "ini scsi_pr_backends") if ini else []
    return list(dict.fromkeys(names or DEFAULT_BACKENDS))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scsi-pr", "SCSI persistent reservation backends")
    group.addoption(
        "--backend",
        action="append",
        dest="scsi_pr_backends",
        choices=list(BACKENDS),
        help="device backend to run backend-independent tests on (repeatable; default: sim, "
        f"or ${ENV_BACKENDS}=a,b)",
    )
    group.addoption(
        "--run-lio-hangs",
        action="store_true",
        default=False,
        help="also run tests marked lio_hangs on LIO backends (they may wedge the LUN: run "
        "them last, in their own process)",
    )
    group.addoption(
        "--lio-test-timeout",
        type=float,
        default=DEFAULT_LIO_TEST_TIMEOUT,
        help="seconds a test on a real-kernel backend (LIO, iSCSI) may go without a command "
        "completing before it fails (0: no limit); "
        "keeps one slow or wedged test from eating the VM tier's time",
    )
    group.addoption(
        "--profile",
        dest="scsi_pr_profile",
        default=profiles.DEFAULT_PROFILE,
        choices=list(profiles.PROFILES),
        help=f"how the model answers on {', '.join(sorted(PROFILED_BACKENDS))} (default "
        f"{profiles.DEFAULT_PROFILE}; lio-6.1: as LIO on 6.1, docs/lio-deviations.md)",
    )
    parser.addini("scsi_pr_backends", "default backends", type="args", default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*capabilities): skip on backends without these capabilities"
    )
    config.addinivalue_line(
        "markers",
        "deviates(*backends, reason, clause): known deviation from SPC on these backends "
        "(strict xfail there)",
    )
    config.addinivalue_line(
        "markers", "lio_hangs(reason): makes LIO on tcm_loop hang (known defect, run last)"
    )
    config.addinivalue_line(
        "markers", "uses_backend: added by the plugin to every test taking the backend fixture"
    )
    # Registered here too (tests/vm/conftest.py owns it) so the VM tier's marker expression
    # stays valid when it runs a subset of the test tree.
    config.addinivalue_line("markers", "guest_e2e: boots a nested QEMU guest inside the VM")
    config.addinivalue_line(
        "markers", "multipath: configures the VM's one multipathd (the VM tier's mpath phase)"
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    names = selected_backends(config)
    ci = "CI=true: unavailable backends fail" if in_ci() else "unavailable backends skip"
    return [
        f"scsi-pr backends: {', '.join(names)} ({ci})",
        f"kernel: {platform.system()} {platform.release()}",
        f"model profile (sim, helper-sim): {config.getoption('scsi_pr_profile')}; "
        f"LIO answers as {lio_profile().name}",
    ]


def lio_profile() -> Profile:
    """The LIO profile for the running kernel (6.1's where no profile names this kernel)."""
    return profiles.lio_profile_for(platform.release()) or profiles.LIO_6_1


def backend_profile(config: pytest.Config, name: str) -> Profile:
    """How the device behind backend ``name`` answers (see the module docstring)."""
    if name in PROFILED_BACKENDS:
        return profiles.get(config.getoption("scsi_pr_profile"))
    if name in LIO_BACKENDS:
        return lio_profile()
    return profiles.SPC5


def hangs_like_lio(config: pytest.Config, name: str | None) -> bool:
    """Does PREEMPT AND ABORT hang on this backend (LIO, or the model reproducing it)?"""
    if name in LIO_BACKENDS:
        return True
    return name in PROFILED_BACKENDS and PREEMPT_AND_ABORT_STALLS in backend_profile(config, name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("backend", names, indirect=True, ids=names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_hangs = config.getoption("run_lio_hangs")
    for item in items:
        name = _backend_name(item)
        if name is None:
            continue
        item.add_marker(pytest.mark.uses_backend)
        dev = item.get_closest_marker("deviates")
        if dev is not None and name in dev.args:
            reason = dev.kwargs.get("reason", "deviates from SPC")
            clause = dev.kwargs.get("clause")
            text = f"{name} deviates: {reason}" + (f" ({clause})" if clause else "")
            item.add_marker(pytest.mark.xfail(reason=text, strict=True))
        hang = item.get_closest_marker("lio_hangs")
        if hang is not None and name in LIO_BACKENDS:
            reason = hang.kwargs.get("reason", "")
            if not run_hangs:
                # Not a silent skip: the VM tier runs these with --run-lio-hangs and counts them.
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"{LIO_HANGS} ({reason}): deferred to the --run-lio-hangs run"
                    )
                )
    # The multipath map, once up, stays up to the end of the process, and multipathd's path
    # checker sends TEST UNIT READY down the LIO ports it spans, taking the unit attentions
    # other backends' tests expect there: the map's tests go last (stable: nothing else moves),
    # the ``multipath`` tests after the backend's: they remove the map they share with it, which
    # the backend's tests after them would build again (seconds under TCG)
    items.sort(key=_map_order)


def _map_order(item: pytest.Item) -> tuple[bool, bool]:
    """Sort key: (a test of the map's, a ``multipath`` test)."""
    multipath = item.get_closest_marker("multipath") is not None
    return (multipath or _backend_name(item) == MULTIPATH_BACKEND, multipath)


def _backend_name(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("backend") if callspec is not None else None


def per_test_deadline(backend: str | None, limit: float) -> float:
    """The seconds a test on ``backend`` may take (0: no limit): only a real kernel can block
    a command for good; the in-process model and its helper fail fast on their own."""
    return limit if backend in KERNEL_BACKENDS else 0.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """On real-kernel backends: bound the test's time. On LIO: report an ``lio_hangs`` test that
    hung the LUN as xfail "LIO hangs", even if the test caught the timeout itself and passed: a
    hang is a known defect, never a pass."""
    name = _backend_name(item)
    hang_expected = (
        hangs_like_lio(item.config, name) and item.get_closest_marker("lio_hangs") is not None
    )
    limit = per_test_deadline(name, item.config.getoption("lio_test_timeout"))
    backend = item.funcargs.get("backend") if isinstance(item, pytest.Function) else None
    with _deadline(limit):
        try:
            result = yield
        except TimeoutError as e:  # CommandTimeout and socket timeouts alike
            if hang_expected:
                _known_hang(backend, str(e))
            raise
        except DeadlineExceeded:
            if hang_expected:
                _known_hang(backend, f"no command completed for {limit:g} s")
            pytest.fail(f"no command completed for --lio-test-timeout={limit:g} s", pytrace=False)
    if hang_expected and isinstance(backend, Backend) and backend.hung:
        _known_hang(backend, "a command timed out")
    return result


def _known_hang(backend: object, what: str) -> NoReturn:
    """xfail "LIO hangs" when the device is shown to hold the command (``Backend.wedged``: it
    is still in flight on that I_T nexus); a timeout the device does not back up fails."""
    if isinstance(backend, Backend) and not backend.wedged():
        pytest.fail(
            f"{what}, but no command is in flight on that I_T nexus: not the known LIO hang",
            pytrace=False,
        )
    pytest.xfail(f"{LIO_HANGS}: {what}, and the device still holds it")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    """A failed test on a backend whose device keeps a log shows that log's part (who sent
    what on which nexus, e.g. a probe that took a unit attention the test was waiting for)."""
    report = yield
    backend = item.funcargs.get("backend") if isinstance(item, pytest.Function) else None
    if report.failed and call.when == "call" and isinstance(backend, Backend):
        text = backend.device_log()
        if text:
            report.sections.append((f"device log ({backend.name})", text))
    return report


class _deadline:
    """Raise DeadlineExceeded in the main thread once no command has completed for ``seconds``
    (``watchdog.note_progress``; 0: no deadline). A periodic SIGALRM checks."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds if threading.current_thread() is threading.main_thread() else 0
        self.interval = min(1.0, max(self.seconds / 4, 0.05))

    def _check(self, signum: int, frame: object) -> None:
        if time.monotonic() - last_progress() > self.seconds:
            raise DeadlineExceeded

    def __enter__(self) -> None:
        if self.seconds > 0:
            note_progress("test started")
            self.previous = signal.signal(signal.SIGALRM, self._check)
            signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)

    def __exit__(self, *exc: object) -> None:
        if self.seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A fresh backend (clean PR state) for one test: ``backend.initiators`` share one LU."""
    name: str = request.param
    needed = request.node.get_closest_marker("requires")
    profile = request.config.getoption("scsi_pr_profile") if name in PROFILED_BACKENDS else None
    try:
        opened = open_backend(name, initiators=DEFAULT_INITIATORS, profile=profile)
    except BackendUnavailable as e:
        message = f"backend {name} unavailable: {e}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: this must run in CI)", pytrace=False)
        pytest.skip(message)
    with opened as b:
        if needed is not None:
            missing = sorted(set(needed.args) - set(b.capabilities))
            if missing:
                pytest.skip(f"backend {name} lacks {', '.join(missing)}")
        yield b


@pytest.fixture
def device_profile(request: pytest.FixtureRequest, backend: Backend) -> Profile:
    """How the device behind ``backend`` answers: the deviations from SPC-5 it has."""
    return backend_profile(request.config, backend.name)


@pytest.fixture
def path_limits(backend: Backend) -> frozenset[str]:
    """What the backend's way to the device cannot carry (``helper.executors.limits``)."""
    return backend.path_limits


@pytest.fixture
def initiators(backend: Backend) -> list[Initiator]:
    """The backend's initiator handles: ``initiators[i].execute(cdb, data) -> CommandResult``."""
    return backend.initiators


def _log(line: dict[str, Any]) -> None:
    path = os.environ.get(ENV_RESULT_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children reaped so far (helpers, targets, the
    nested guest's QEMU). Under TCG the VM tier is bound by the host's CPU: a phase's cost is
    this, while its wall time depends on what runs beside it."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 2)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Log what will run, so a reader can tell which tests a wedged run never reported, and
    what starting and collecting cost."""
    _log({"collected": [item.nodeid for item in session.items], "cpu": cpu_seconds()})


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Log the CPU the whole run used, once the session's helpers are stopped and reaped."""
    _log({"cpu": cpu_seconds()})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Append each outcome to $SCSI_PR_RESULT_LOG (see module docstring)."""
    if not (report.when == "call" or report.outcome != "passed"):
        return
    xfail = getattr(report, "wasxfail", None)
    if xfail is not None:
        outcome = "xpassed" if report.passed else "xfailed"
    elif report.when != "call" and report.failed:
        outcome = "error"
    else:
        outcome = report.outcome
    reason = xfail or ""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(report.longrepr)[-500:]
    _log({"nodeid": report.nodeid, "when": report.when, "outcome": outcome, "reason": reason})
