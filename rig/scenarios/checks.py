"""Checking a scenario's expectations against what the device answered.

Nothing here sends a command: the engine hands over the answers and the PR state its observer
read back, and these functions mark the timeline rows ok or not, with a failure text a reader
can act on. An expectation is one of three kinds: the answer itself (status, sense, and the
command's own data-in check), the unit attentions reported before it, and the PR state after.
"""

from __future__ import annotations

from collections.abc import Callable

from scsi_pr.rig.scenarios.commands import Command, Context
from scsi_pr.rig.scenarios.model import ALL_REGISTRANTS, Outcome, StateCheck, Step
from scsi_pr.rig.scenarios.observe import PrState
from scsi_pr.rig.scenarios.results import Row, RowKind
from scsi_pr.sim.constants import ADDITIONAL_SENSE_BY_CODE, AdditionalSense, SenseKey, Status
from scsi_pr.sim.result import CommandResult

#: TEST UNIT READY retries when clearing unit attentions (SAM-5 lets a LU queue several).
MAX_UA_REPORTS = 8


def is_unit_attention(result: CommandResult) -> bool:
    sense = result.sense_data
    return sense is not None and sense.key == SenseKey.UNIT_ATTENTION


def judge_answer(
    row: Row,
    command: Command,
    expect: tuple[Outcome, ...],
    result: CommandResult,
    ctx: Context,
    data_out: bytes,
) -> None:
    """The answer must be one of ``expect``; a GOOD one must also pass the command's check of
    its data-in (READ KEYS shows the keys, READ the data last written, ...)."""
    row.expected = " or ".join(str(o) for o in expect)
    row.ok = any(o.matches(result) for o in expect)
    if not row.ok:
        row.failures.append(f"{command.label()}: expected {row.expected}, got {result}")
    elif int(result.status) == Status.GOOD:
        row.failures += command.check(result, ctx, data_out)
        row.ok = not row.failures


def unit_attention_rows(
    number: int,
    clock: float,
    actor: str,
    step: Step,
    state: PrState | None,
    answers: list[tuple[CommandResult, float]],
) -> list[Row]:
    """One row per unit attention the TEST UNIT READYs in ``answers`` reported.

    Rows for unit attentions in ``step.expect_ua`` are marked as expected; others are
    informational (a device may queue more, e.g. after a power cycle). An expected one that
    never came is a failure, and so are an answer that is neither GOOD nor a unit attention
    and unit attentions that had not stopped after ``MAX_UA_REPORTS``. A unit attention
    changes no PR state: the rows show ``state``, the last one observed.
    """
    rows: list[Row] = []
    reported: list[tuple[int, int]] = []
    wanted = list(step.expect_ua)
    seen_wanted: set[int] = set()
    for result, took in answers:
        if int(result.status) == Status.GOOD:
            break
        row = Row(number, clock, actor, "TEST UNIT READY", str(result), RowKind.UA, state=state,
                  elapsed_ms=took * 1000, phase=step.phase, status=int(result.status))  # fmt: skip
        rows.append(row)
        sense = result.sense_data
        if sense is None or sense.key != SenseKey.UNIT_ATTENTION:
            row.fail(f"TEST UNIT READY answered {result}")
            break
        reported.append((sense.asc, sense.ascq))
        for i, want in enumerate(wanted):
            if ua_matches(want, sense.asc, sense.ascq):
                seen_wanted.add(i)
                row.ok, row.expected = True, f"UNIT ATTENTION ({ua_name(want)})"
    else:  # every answer was a unit attention: the engine stopped asking
        rows[-1].fail(f"unit attentions still pending after {MAX_UA_REPORTS}")
    missing = [w for i, w in enumerate(wanted) if i not in seen_wanted]
    if missing:
        seen = ", ".join(sense_name(code) for code in reported) or "none"
        if not rows:
            rows.append(Row(number, clock, actor, "TEST UNIT READY", "GOOD", RowKind.UA,
                            state=state, phase=step.phase, status=Status.GOOD))  # fmt: skip
        rows[0].fail(*(f"expected unit attention {ua_name(w)} (reported: {seen})" for w in missing))
    return rows


def judge_state(
    row: Row,
    state: PrState | None,
    before: PrState | None,
    check: StateCheck,
    resolve: Callable[[str], str],
    keys: dict[str, int],
) -> None:
    """The PR state the observer read after ``row``'s step must be what ``check`` says."""
    if state is None:
        row.failures.append("observer could not read the PR state (READ FULL STATUS failed)")
    else:
        row.failures += state_failures(state, before, check, resolve, keys)
    row.ok = not row.failures if row.ok is not False else False


def state_failures(
    state: PrState,
    before: PrState | None,
    check: StateCheck,
    resolve: Callable[[str], str],
    keys: dict[str, int],
) -> list[str]:
    failures: list[str] = []
    if check.holder is not ...:
        want = check.holder if check.holder in (None, ALL_REGISTRANTS) else resolve(check.holder)
        if state.holder != want:
            failures.append(f"holder: expected {want or 'none'}, observed {state.holder or 'none'}")
    if check.registered is not None:
        want_keys = {resolve(a): keys[resolve(a)] for a in check.registered}
        if state.keys != dict(sorted(want_keys.items())):
            shown = {a: f"0x{k:x}" for a, k in state.keys.items()}
            wanted = {a: f"0x{k:x}" for a, k in sorted(want_keys.items())}
            failures.append(f"registrations: expected {wanted}, observed {shown}")
    if check.unchanged:
        if before is None:
            failures.append("no earlier state to compare with")
        elif not state.same_as(before):
            failures.append(f"PR state changed: was {before.to_json()}, now {state.to_json()}")
    return failures


def ua_matches(want: AdditionalSense | int, asc: int, ascq: int) -> bool:
    if isinstance(want, int):
        return asc == want
    return (want.asc, want.ascq) == (asc, ascq)


def ua_name(want: AdditionalSense | int) -> str:
    return f"ASC {want:02X}h" if isinstance(want, int) else want.name


def sense_name(code: tuple[int, int]) -> str:
    """An ASC/ASCQ pair by its SPC name where it has one."""
    known = ADDITIONAL_SENSE_BY_CODE.get(code)
    return known.name if known is not None else f"{code[0]:02X}h/{code[1]:02X}h"
