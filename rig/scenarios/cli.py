"""``scsi-pr scenario [run] NAME|FILE [--backend B] [--profile P] [--svg FILE] [--json]``: run one
scenario, built in or a scenario file; ``scsi-pr scenario show NAME|FILE [--as-file]``: describe
one, or print the scenario file that defines it (to copy and edit); ``--list``: the built-ins.

``--profile`` (sim and helper-sim) makes the model answer as LIO does on a kernel: with
``lio-6.1`` PREEMPT AND ABORT never completes and the run ends "hung", as on the real LUN.

Exit status: 0 pass, 1 an expectation failed, 2 could not run (usage, backend unavailable,
backend error), 3 the device hung (LIO's PREEMPT AND ABORT), 4 the backend lacks a capability
the scenario needs (e.g. no helper to restart on ``sim``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from scsi_pr.rig.backends import (
    BACKENDS,
    PROFILED_BACKENDS,
    Backend,
    BackendUnavailable,
    Capability,
    ProfileNotApplicable,
    backend_factory,
    open_backend,
)
from scsi_pr.rig.errors import reason
from scsi_pr.rig.progress import Tracker
from scsi_pr.rig.scenarios.commands import hexkey
from scsi_pr.rig.scenarios.deadline import DEFAULT_TIMEOUT, call_with_deadline
from scsi_pr.rig.scenarios.engine import Runner
from scsi_pr.rig.scenarios.fileread import load, loads, read_text
from scsi_pr.rig.scenarios.filewrite import dumps
from scsi_pr.rig.scenarios.library import SCENARIOS, builtin_text, get
from scsi_pr.rig.scenarios.model import Scenario, ScenarioError
from scsi_pr.rig.scenarios.render import (
    SvgTargetError,
    print_timeline,
    shown_name,
    svg_target,
    to_json,
    write_svg,
)
from scsi_pr.rig.scenarios.results import EXIT_CODES, Run, Verdict
from scsi_pr.sim.profiles import PROFILES

#: How long closing a backend may take after a hang before we leave it to process exit.
TEARDOWN_TIMEOUT = 10.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scsi-pr scenario",
        usage="%(prog)s [run] NAME|FILE [options]  |  %(prog)s show NAME|FILE [--as-file]"
        "  |  %(prog)s --list",
        description="Run a reservation-conflict scenario — a built-in or a scenario file "
        "(docs/scenarios.md) — and show its timeline. 'show NAME --as-file' prints a built-in "
        "as a file to copy and edit.",
        epilog="exit status: 0 pass, 1 expectation failed, 2 could not run, 3 device hung, "
        "4 backend lacks a needed capability",
    )
    p.add_argument(
        "name",
        nargs="?",
        metavar="NAME|FILE",
        help=f"a built-in ({', '.join(SCENARIOS)}) or a scenario file (TOML)",
    )
    p.add_argument(
        "--backend", default="sim", choices=list(BACKENDS), help="device to run on (default: sim)"
    )
    p.add_argument(
        "--profile",
        choices=list(PROFILES),
        help=f"how the model answers on {' and '.join(sorted(PROFILED_BACKENDS))} "
        "(default spc5; lio-6.1: as LIO on 6.1, docs/lio-deviations.md)",
    )
    # a string, not a Path: Path("") is ".", and an empty name must be refused as one
    p.add_argument("--svg", metavar="FILE", help="write the sequence chart here")
    p.add_argument("--json", action="store_true", help="print the run as JSON, not a table")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"per-command deadline before the run is declared hung (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p


def run_scenario(
    scenario: Scenario,
    backend_name: str,
    timeout: float = DEFAULT_TIMEOUT,
    profile: str | None = None,
    on_item: Callable[[int, str], None] | None = None,
    races_in_order: bool = False,
) -> Run:
    """Open ``backend_name`` (with ``profile``, sim backends only) with one initiator per actor
    plus the observer — once per device of the scenario when the backend can give independent
    LUs (else once, and the run says ``unsupported``) — and run.

    Raises BackendUnavailable when the backend cannot run here. After a hang the backends are
    closed with a deadline too: a wedged LUN must not turn a verdict into a stall.
    """
    try:
        offers = backend_factory(backend_name).capabilities
    except ImportError as e:
        raise BackendUnavailable(f"its module is missing ({e})") from e
    # a backend that cannot give what the scenario needs is opened once, plainly: the run then
    # says "unsupported"
    count = max(len(scenario.devices), 1) if Capability.INDEPENDENT_LUS in offers else 1
    names = scenario.initiator_names() if Capability.NAMED_INITIATORS in offers else []
    opened: list[Backend] = []
    run = None
    try:
        for _ in range(count):
            backend = open_backend(backend_name, len(scenario.actors) + 1, profile, names)
            opened.append(backend.__enter__())
        run = Runner(scenario, opened[0], timeout, opened[1:], on_item, races_in_order).run()
        return run
    finally:
        for backend in reversed(opened):
            if run is not None and run.verdict == Verdict.HUNG:
                close_after_hang(backend, backend_name)
            else:
                backend.__exit__(*sys.exc_info())


def close_after_hang(backend: Backend, backend_name: str) -> None:
    try:
        call_with_deadline(lambda: backend.__exit__(None, None, None), TEARDOWN_TIMEOUT)
    except Exception as e:
        print(f"scsi-pr scenario: closing {backend_name} after the hang: {e}", file=sys.stderr)


def show_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scsi-pr scenario show",
        description="Describe a scenario, or print the scenario file that defines it.",
    )
    p.add_argument("name", metavar="NAME|FILE", help="a built-in or a scenario file")
    p.add_argument(
        "--as-file",
        action="store_true",
        help="print it as a scenario file (TOML) to copy, edit and run with 'scenario run FILE'",
    )
    return p


def _builtin(name: str) -> bool:
    return name in SCENARIOS


def _file(name: str) -> Path:
    """``name`` as a scenario file's path. A name no file can have (longer than the file
    system allows) makes ``Path.exists`` raise rather than answer False: it is no scenario
    just the same, and is refused as one (with the system's reason)."""
    path = Path(name)
    try:
        found, why = path.exists(), ""
    except OSError as e:
        found, why = False, f" ({reason(e)})"
    if not found:
        raise ScenarioError(
            f"no scenario {shown_name(name)}: neither a built-in"
            f" ({', '.join(SCENARIOS)}) nor a file{why}"
        )
    return path


def resolve(name: str) -> Scenario:
    """The scenario ``name`` means: a built-in's name, else a scenario file's path.

    Raises ScenarioError (a ``ScenarioFileError`` for a bad file) with the reason."""
    return get(name) if _builtin(name) else load(_file(name))


def as_file(name: str) -> str:
    """The scenario file ``name`` means: a built-in's as shipped (comments included; one added
    in code, as written), or a file's own text once it reads as a scenario."""
    if _builtin(name):
        scenario = get(name)
        try:
            return builtin_text(scenario.name)
        except FileNotFoundError:
            return dumps(scenario)
    path = _file(name)
    text = read_text(path)
    loads(text, str(path))  # a file that would not run is refused here too
    return text


def describe(scenario: Scenario) -> list[str]:
    """What ``show`` prints: what the scenario is, where its sequence comes from, its phases."""
    lines = [f"{scenario.name}: {scenario.title}", "", scenario.summary, ""]
    lines.append(f"source: {scenario.source.software}")
    lines += [f"  {f}" for f in scenario.source.files]
    if scenario.source.assumed:
        lines.append(f"assumed: {scenario.source.assumed}")
    actors = ", ".join(
        f"{a} (key {hexkey(scenario.keys[a])})" if a in scenario.keys else a
        for a in scenario.actors
    )
    lines += ["", f"actors: {actors}", f"steps: {len(scenario.items)}, in phases:"]
    phases = dict.fromkeys(i.phase for i in scenario.items if i.phase)
    lines += [f"  {phase}" for phase in phases]
    if scenario.needs:
        lines.append(f"needs a backend that can: {', '.join(sorted(scenario.needs))}")
    return lines


def show(argv: list[str]) -> int:
    args = show_parser().parse_args(argv)
    try:
        text = as_file(args.name) if args.as_file else "\n".join(describe(resolve(args.name)))
    except ScenarioError as e:
        print(f"scsi-pr scenario show: {e}", file=sys.stderr)
        return EXIT_CODES[Verdict.ERROR]
    print(text, end="" if args.as_file else "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["show"]:
        return show(argv[1:])
    if argv[:1] == ["run"]:
        argv = argv[1:]
    args = parser().parse_args(argv)
    if args.list:
        width = max(map(len, SCENARIOS))
        for s in SCENARIOS.values():
            print(f"{s.name:<{width}}  {s.title}")
        return 0
    if args.name is None:
        parser().print_usage(sys.stderr)
        print("scsi-pr scenario: a scenario NAME or FILE is required (see --list)", file=sys.stderr)
        return 2
    if not args.timeout > 0:
        print(f"scsi-pr scenario: --timeout must be positive, not {args.timeout}", file=sys.stderr)
        return 2
    try:
        svg = None if args.svg is None else svg_target(args.svg)
    except SvgTargetError as e:
        print(f"scsi-pr scenario: --svg: {e}", file=sys.stderr)
        return EXIT_CODES[Verdict.ERROR]
    try:
        scenario = resolve(args.name)
    except ScenarioError as e:
        print(f"scsi-pr scenario: {e}", file=sys.stderr)
        return EXIT_CODES[Verdict.ERROR]
    try:
        # a bar on stderr while it runs (LIO scenarios take a while in a VM), gone before the table
        with Tracker(f"{scenario.name} on {args.backend}", total=len(scenario.items)) as bar:
            run = run_scenario(
                scenario, args.backend, args.timeout, args.profile, lambda n, w: bar.update(n, w)
            )
    except ProfileNotApplicable as e:
        print(f"scsi-pr scenario: --profile: {e}", file=sys.stderr)
        return EXIT_CODES[Verdict.ERROR]
    except BackendUnavailable as e:
        print(f"scsi-pr scenario: backend {args.backend} unavailable: {e}", file=sys.stderr)
        return EXIT_CODES[Verdict.ERROR]
    except ScenarioError as e:
        print(f"scsi-pr scenario: {e}", file=sys.stderr)
        return EXIT_CODES[Verdict.ERROR]
    if args.json:
        print(to_json(run))
    else:
        print_timeline(run, Console())
    if svg is not None:
        try:
            write_svg(run, svg)
        except SvgTargetError as e:  # checked before the run, but the disk may still refuse
            print(f"scsi-pr scenario: --svg: {e}", file=sys.stderr)
            return EXIT_CODES[Verdict.ERROR]
        if not args.json:
            print(f"sequence chart: {svg}")
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
