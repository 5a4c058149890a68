"""``scsi-pr lockstep``: the model against a device, the same commands, step by step.

    scsi-pr lockstep [--device lio] [--steps 2000] [--profile NAME] [--save FILE]
    scsi-pr lockstep --replay FILE [--device ...]
    scsi-pr lockstep --preempt-and-abort RUNS [--device ...]

``--preempt-and-abort`` runs only PREEMPT AND ABORT programs, each on a fresh pair; on LIO every
one that succeeds wedges an LU for good (docs/lockstep.md): a process of its own, run last.

On LIO (root, in the VM: ``scsi-pr vm run -- scsi-pr lockstep``) the model takes the running
kernel's LIO profile. ``--device sim --device-profile spc5 --profile lio-6.1`` compares two
profiles of the model with each other, on any machine. Exit status: 0 no difference, 1 a
difference (the replay script is printed, and written to ``--save``), 2 the device cannot run.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from scsi_pr.rig.backends import (
    BACKENDS,
    Backend,
    BackendUnavailable,
    ProfileNotApplicable,
    SimBackend,
    open_backend,
    takes_profile,
)
from scsi_pr.rig.errors import reason
from scsi_pr.rig.lockstep.abort import run_preempt_and_abort
from scsi_pr.rig.lockstep.run import MAX_PER_SESSION, PER_SESSION, Report, run
from scsi_pr.rig.lockstep.session import LockstepError, Session, replay
from scsi_pr.rig.lockstep.steps import ReplayError, read_replay
from scsi_pr.sim import profiles

DEFAULT_STEPS = 2000
DEFAULT_INITIATORS = 3
#: the LIO rig's bound (``lio.LunSpec``: one tcm_loop target per initiator, 1..32); the model
#: side mirrors that layout, and an unbounded count would build the model's ports for ever
MAX_INITIATORS = 32


def default_profile(device: str, device_profile: str | None) -> str:
    """The model answers as the device should: its own profile, or the running kernel's LIO."""
    if device_profile is not None:
        return device_profile
    if device in ("sim", "helper-sim"):
        return profiles.DEFAULT_PROFILE
    return (profiles.lio_profile_for(platform.release()) or profiles.LIO_6_1).name


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scsi-pr lockstep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--device", default="lio", choices=sorted(BACKENDS),
                   help="the device side (default: lio)")  # fmt: skip
    p.add_argument("--device-profile", help="profile of a model-backed device (sim, helper-sim)")
    p.add_argument("--profile", help="the model's profile (default: the device's)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"steps to compare at least (default {DEFAULT_STEPS})")  # fmt: skip
    p.add_argument("--per-session", type=int, default=PER_SESSION,
                   help=f"steps between fresh starts, 1..{MAX_PER_SESSION} "
                   f"(default {PER_SESSION})")  # fmt: skip
    p.add_argument("--initiators", type=int, default=DEFAULT_INITIATORS,
                   help=f"initiators on each side, 2..{MAX_INITIATORS} "
                   f"(default {DEFAULT_INITIATORS})")  # fmt: skip
    p.add_argument("--replay", type=Path, help="run this replay script instead of generating")
    p.add_argument("--save", type=Path, help="write the replay script of a difference here")
    p.add_argument("--preempt-and-abort", type=int, metavar="RUNS",
                   help="instead: RUNS programs ending in PREEMPT AND ABORT")  # fmt: skip
    return p


def _positive(p: argparse.ArgumentParser, name: str, value: int, least: int = 1) -> None:
    if value < least:
        p.error(f"--{name} must be at least {least}")


def _at_most(p: argparse.ArgumentParser, name: str, value: int, most: int) -> None:
    if value > most:
        p.error(f"--{name} must be at most {most}")


def _print_difference(session: Session, header: list[str], save: Path | None) -> None:
    text = session.replay(header)
    print(text, end="")
    if save is not None:
        try:
            save.write_text(text, encoding="utf-8")
        except OSError as e:  # the script is printed above: the difference is not lost
            print(f"scsi-pr lockstep: cannot write {save}: {reason(e)}", file=sys.stderr)
            return
        print(f"replay script written to {save}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    _positive(p, "steps", args.steps)
    _positive(p, "per-session", args.per_session)
    _at_most(p, "per-session", args.per_session, MAX_PER_SESSION)
    _positive(p, "initiators", args.initiators, 2)
    _at_most(p, "initiators", args.initiators, MAX_INITIATORS)
    if args.preempt_and_abort is not None:
        _positive(p, "preempt-and-abort", args.preempt_and_abort)
        if args.replay is not None:
            p.error("--preempt-and-abort and --replay exclude each other")
    try:
        model_profile = profiles.get(
            args.profile or default_profile(args.device, args.device_profile)
        ).name
        if args.device_profile is not None:
            profiles.get(args.device_profile)
            takes_profile(args.device)  # a usage error, not a traceback at the first session
    except (profiles.UnknownProfile, ProfileNotApplicable) as e:
        p.error(str(e))

    def open_model() -> Backend:
        return SimBackend(initiators=args.initiators, profile=model_profile)

    def open_device() -> Backend:
        return open_backend(args.device, args.initiators, profile=args.device_profile)

    device = args.device + (f" ({args.device_profile})" if args.device_profile else "")
    header = [f"scsi-pr lockstep --replay: model {model_profile} vs device {device}",
              "each step: the decoded command, both answers, then the step itself"]  # fmt: skip
    try:
        if args.replay is not None:
            steps = read_replay(args.replay, args.initiators)
            session = replay(open_model, open_device, steps)
            if session.history[-1].differs is None:
                print(f"lockstep: the replay of {len(steps)} steps shows no difference")
                return 0
            _print_difference(session, header, args.save)
            return 1
        if args.preempt_and_abort is not None:
            aborts = run_preempt_and_abort(open_model, open_device, args.preempt_and_abort,
                                           args.initiators)  # fmt: skip
            if aborts.failed is not None:
                _print_difference(aborts.failed, header, args.save)
            print(aborts.summary(model_profile, device))
            return 0 if aborts.failed is None else 1
        report: Report = run(open_model, open_device, args.steps, args.initiators,
                             args.per_session)  # fmt: skip
    except BackendUnavailable as e:
        print(f"scsi-pr lockstep: device {args.device} unavailable: {e}", file=sys.stderr)
        return 2
    except ReplayError as e:
        p.error(str(e))
    except LockstepError as e:  # a side could not be brought to the start: it cannot run
        print(f"scsi-pr lockstep: {e}", file=sys.stderr)
        return 2
    if report.minimal is not None:
        _print_difference(report.minimal, header, args.save)
    print(report.summary(model_profile, device))
    return 0 if report.failed is None else 1
