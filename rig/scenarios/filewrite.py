"""Write a ``Scenario`` as a scenario file: what ``scsi-pr scenario show NAME --as-file`` prints
for a scenario built in code, and the check that the reader and the writer agree.

Written by hand rather than with tomli-w: the file is for people, so keys are hex as sg_persist
prints them, long texts wrap at 96 columns, defaults are left out and a header says how to run
it — none of which a generic TOML writer does.
"""

from __future__ import annotations

import re

from scsi_pr.rig.scenarios import fileformat as ff
from scsi_pr.rig.scenarios.commands import hexkey
from scsi_pr.rig.scenarios.model import Action, Item, Race, Scenario, StateCheck, Step

WIDTH = 96


def value(text: str, before: int, after: int = 0) -> str:
    """``text`` as a TOML string for a line with ``before`` columns ahead of it and ``after``
    behind it (a list entry's comma): a basic string when it fits in ``WIDTH``, else a
    multi-line string with line-ending backslashes.

    The backslash joins lines without the newline, and the reader drops the white space that
    starts the next line: so a line ends after a word's spaces (kept, ahead of the backslash)
    and the next starts at a word, and spaces that start the text are escaped. Each line holds
    its backslash, the last its closing quotes and ``after``, within ``WIDTH``.
    """
    one = ff.toml_string(text)
    words = _WORDS.findall(text)
    if before + len(one) + after <= WIDTH or len(words) < 2:
        return one
    lead = len(text) - len(text.lstrip(" "))
    lines, line = [], "\\u0020" * lead
    for i, word in enumerate(words):
        piece = ff.toml_string(word)[1:-1]
        ending = 1 if i < len(words) - 1 else 3 + after  # the backslash, or the quotes
        if i and len(line) + len(piece) + ending > WIDTH:
            lines.append(line + "\\")
            line = piece
        else:
            line += piece
    lines.append(line)
    return '"""\\\n' + "\n".join(lines) + '"""'


#: a word and the spaces after it: the places a long text may be broken
_WORDS = re.compile(r"[^ ]+ *")


def string(key: str, text: str) -> str:
    return f"{key} = {value(text, len(key) + 3)}"


def _state(check: StateCheck | None) -> list[str]:
    if check is None:
        return []
    parts = []
    if check.holder is not ...:
        parts.append(f"holder = {ff.write_holder(check.holder)}")
    if check.registered is not None:
        parts.append(
            "registered = [" + ", ".join(ff.toml_string(a) for a in check.registered) + "]"
        )
    if check.unchanged:
        parts.append("unchanged = true")
    return ["state = { " + ", ".join(parts) + " }"]


def _tail(item: Item) -> list[str]:
    lines = [f"device = {ff.toml_string(item.device)}"] if item.device else []
    lines += [f"wait = {item.wait:g}"] if item.wait else []
    lines += _state(item.state)
    return lines + ([string("note", item.note)] if item.note else [])


def _command(step: Step) -> list[str]:
    spec = ff.spec_of(step.command)
    required = spec.required()
    lines = [f"actor = {ff.toml_string(step.actor)}", f"command = {ff.toml_string(spec.name)}"]
    for f in spec.fields:
        value = getattr(step.command, f.attr)
        if f in required or value != spec.default(f):
            lines.append(f"{f.name} = {f.kind.write(value)}")
    return lines


def _outcomes(key: str, outcomes: tuple, default: tuple[str, ...]) -> list[str]:
    texts = tuple(ff.write_outcome(o) for o in outcomes)
    if texts == default:
        return []
    line = f"{key} = [" + ", ".join(ff.toml_string(t) for t in texts) + "]"
    if len(line) <= WIDTH:
        return [line]
    return [f"{key} = [", *(f"  {ff.toml_string(t)}," for t in texts), "]"]


def _step(step: Step) -> list[str]:
    lines = ["[[phase.step]]", *_command(step), *_outcomes("expect", step.expect, ("GOOD",))]
    if step.expect_ua:
        uas = ", ".join(ff.toml_string(ff.write_unit_attention(u)) for u in step.expect_ua)
        lines.append(f"expect-ua = [{uas}]")
    if not step.clear_ua:
        lines.append("clear-ua = false")
    if step.stall:
        lines.append(f"stall = {step.stall:g}")
    return lines + _tail(step)


def _race(race: Race) -> list[str]:
    lines = ["[[phase.step]]"]
    lines += _outcomes("losers-expect", race.losers_expect, ("RESERVATION CONFLICT",))
    lines += _tail(race)
    for step in race.steps:
        lines += ["", "[[phase.step.race]]", *_command(step)]
    return lines


def _action(action: Action) -> list[str]:
    if action.capability is None:
        lines = ["[[phase.step]]", string("event", action.label)]
    else:
        lines = [
            "[[phase.step]]",
            f"action = {ff.write_action(action.capability)}",
            string("label", action.label),
        ]
    if action.actor != "LUN":
        lines.append(f"actor = {ff.toml_string(action.actor)}")
    return lines + _tail(action)


def dumps(scenario: Scenario) -> str:
    """The scenario file that reads back as ``scenario``."""
    out = [
        f"# {scenario.name}: {scenario.title}",
        '# A scsi-pr scenario file (docs/scenarios.md, "Scenario files"). Run it with',
        f"#   scsi-pr scenario run {scenario.name}.toml --backend sim",
        f"format = {ff.FORMAT}",
        f"name = {ff.toml_string(scenario.name)}",
        string("title", scenario.title),
        string("summary", scenario.summary),
        *(
            ["devices = [" + ", ".join(ff.toml_string(d) for d in scenario.devices) + "]"]
            if scenario.devices
            else []
        ),
        "",
        "[source]",
        string("software", scenario.source.software),
        "files = [" + "".join(f"\n  {value(f, 2, 1)}," for f in scenario.source.files) + "\n]",
    ]
    if scenario.source.assumed:
        out.append(string("assumed", scenario.source.assumed))
    for actor in scenario.actors:
        out += ["", "[[actor]]", f"name = {ff.toml_string(actor)}"]
        if actor in scenario.keys:
            out.append(f"key = {hexkey(scenario.keys[actor])}")
        if actor in scenario.initiators:
            out.append(f"initiator = {ff.toml_string(scenario.initiators[actor])}")
    phase = None
    for item in scenario.items:
        if item.phase != phase or phase is None:
            phase = item.phase
            out += ["", "[[phase]]", string("name", phase)]
        writer = _race if isinstance(item, Race) else _action if isinstance(item, Action) else _step
        out += ["", *writer(item)]  # type: ignore[operator]
    return "\n".join(out) + "\n"
