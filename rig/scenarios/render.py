"""Showing a run: a ``rich`` timeline table, JSON, and an SVG sequence chart.

The SVG is built with ``xml.etree`` so it is well-formed by construction: one lane per
initiator plus the LUN, one arrow per command (label above, answer below, coloured by
outcome), and a holder bar beside the LUN lane coloured by whoever holds the reservation.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from scsi_pr.rig.errors import RigError, reason
from scsi_pr.rig.scenarios.model import ALL_REGISTRANTS
from scsi_pr.rig.scenarios.observe import PrState
from scsi_pr.rig.scenarios.results import Row, RowKind, Run, Verdict
from scsi_pr.sim.constants import Status

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
ALL_COLOUR, NONE_COLOUR = "#7f7f7f", "#eeeeee"
STATUS_COLOUR: dict[int | None, str] = {
    Status.GOOD: "#2a8a2a",
    Status.RESERVATION_CONFLICT: "#c62828",
}
VERDICT_STYLE = {
    Verdict.PASS: "bold green",
    Verdict.FAIL: "bold red",
    Verdict.ERROR: "bold red",
    Verdict.HUNG: "bold magenta",
    Verdict.UNSUPPORTED: "bold yellow",
}


def result_colour(row: Row) -> str:
    """Green GOOD, red RESERVATION CONFLICT, orange CHECK CONDITION; magenta hang."""
    if row.kind == RowKind.HANG:
        return "#c000c0"
    return STATUS_COLOUR.get(row.status, "#e07000")


def holder_text(state: PrState | None) -> str:
    if state is None:
        return "?"
    if state.holder is None:
        return "—"
    kind = f" {state.type_.abbreviation}" if state.type_ else ""
    return f"{state.holder}{kind}"


def keys_text(state: PrState | None, known: dict[str, int]) -> str:
    """Registered actors; the key is spelled out only where it is not the actor's own
    (``known``, listed once in the caption)."""
    if state is None:
        return "?"
    return (
        " ".join(a if known.get(a) == k else f"{a}=0x{k:x}" for a, k in state.keys.items()) or "—"
    )


def keys_caption(run: Run) -> str:
    return "keys: " + ", ".join(f"{a}=0x{k:x}" for a, k in run.scenario.keys.items())


# -- terminal -------------------------------------------------------------------------------
#: below this many columns the timeline takes its narrow form (``timeline_table``)
WIDE = 120
#: the narrow form's abbreviations, applied in this order
ABBREVIATIONS = (
    ("PR OUT ", ""),
    ("PR IN ", ""),
    ("REGISTER AND IGNORE", "REG+IGNORE"),
    ("REGISTER AND MOVE", "REG+MOVE"),
    ("PREEMPT AND ABORT", "PREEMPT+ABORT"),
    ("READ RESERVATION", "READ RES"),
    ("RESERVATION CONFLICT", "CONFLICT"),
    ("CHECK CONDITION", "CHECK"),
    ("UNIT ATTENTION", "UA"),
)
#: (name, justify, in the narrow form): the narrow form drops ``t``, then ``keys`` (the
#: caption lists them), and puts each step's note on a second line of its command
COLUMNS = (
    ("#", "right", True),
    ("t", "right", False),
    ("initiator", "left", True),
    ("command", "left", True),
    ("result", "left", True),
    ("holder", "left", True),
    ("keys", "left", False),
)


#: the narrow form's column widths (the initiator's is the longest actor name's; the command
#: column gets the rest)
NARROW_WIDTH = {"#": 2, "result": 14, "holder": 11}


def abbreviate(text: str) -> str:
    for long, short in ABBREVIATIONS:
        text = text.replace(long, short)
    return text


def timeline_table(run: Run, width: int = WIDE) -> Table:
    """The timeline; under ``WIDE`` columns in its narrow form: at most two lines per step
    (command, then its note), cells cut with an ellipsis instead of wrapped, abbreviations."""
    s = run.scenario
    narrow = width < WIDE
    table = Table(
        title=f"{s.name} on {run.backend}: {s.title}",
        title_justify="left",
        caption=keys_caption(run),
        caption_justify="left",
        header_style="bold",
        expand=False,
        pad_edge=not narrow,
    )
    shown = [c for c in COLUMNS if c[2] or not narrow]
    narrow_widths = dict(NARROW_WIDTH)
    narrow_widths["initiator"] = max([3, *(len(a) for a in s.actors)])
    # every column but the command has its width; the command takes what is left (rich
    # squeezes no-wrap columns unevenly otherwise): 3 characters of rule and padding apiece
    narrow_widths["command"] = max(16, width - sum(narrow_widths.values()) - 3 * len(shown) - 1)
    for name, justify, _ in shown:
        table.add_column(
            "who" if narrow and name == "initiator" else name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=narrow,
            overflow="ellipsis" if narrow else "fold",
            width=narrow_widths.get(name) if narrow else None,
        )
    short = abbreviate if narrow else (lambda text: text)
    phase = None
    for row in run.rows:
        if row.phase and row.phase != phase:
            phase = row.phase
            table.add_row(*[Text(phase, style="bold cyan") if c[0] == "command" else ""
                            for c in shown])  # fmt: skip
        mark = {True: ("✓ ", "green"), False: ("✗ ", "bold red"), None: ("  ", "dim")}[row.ok]
        # assembled, not added: ``a + b`` gives the whole cell a's style (a dim mark dimmed a
        # hang's answer, a failed row's answer turned bold)
        result = Text.assemble(mark, (short(row.result), _rich_style(row)))
        if row.failures:
            result += Text("\n" + "\n".join(row.failures), style="red")
        command = Text(short(row.command), style="dim" if row.kind == RowKind.UA else "")
        if row.note:
            command += Text(("\n" if narrow else "  · ") + row.note, style="dim italic")
        cells = {
            "#": str(row.step),
            "t": f"{row.time:g}s",
            "initiator": row.actor,
            "command": command,
            "result": result,
            "holder": holder_text(row.state),
            "keys": keys_text(row.state, s.keys),
        }
        table.add_row(*[cells[c[0]] for c in shown])
    return table


def _rich_style(row: Row) -> str:
    return {"#2a8a2a": "green", "#c62828": "red", "#e07000": "dark_orange", "#c000c0": "magenta"}[
        result_colour(row)
    ]


def print_timeline(run: Run, console: Console | None = None) -> None:
    console = console or Console()
    console.print(timeline_table(run, console.width))
    style = VERDICT_STYLE[run.verdict]
    console.print(Text(f"{run.verdict.value.upper()}: {run.message}", style=style))


def timeline_text(run: Run, width: int) -> str:
    """The table as plain text (for docs): what ``print_timeline`` shows, without colour."""
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    print_timeline(run, console)
    return console.export_text()


def to_json(run: Run) -> str:
    return json.dumps(run.to_json(), indent=2)


# -- SVG ------------------------------------------------------------------------------------
LANE_GAP, LEFT, TOP, ROW_H, PHASE_H = 250, 90, 96, 30, 22
BAR_W = 16


def colours(run: Run) -> dict[str, str]:
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(run.scenario.actors)}


def svg_chart(run: Run) -> ET.Element:
    """The sequence chart of ``run`` as an ``<svg>`` element."""
    actors = list(run.scenario.actors)
    colour = colours(run)
    lane_x = {a: LEFT + 80 + i * LANE_GAP for i, a in enumerate(actors)}
    lun_x = LEFT + 80 + len(actors) * LANE_GAP
    bar_x = lun_x + 95
    holder_x, keys_x = bar_x + BAR_W + 8, bar_x + BAR_W + 110
    # vertical layout: one slot per row, plus a heading slot when the phase changes
    ys: list[tuple[Row, float, str | None]] = []
    y, phase = float(TOP), None
    for row in run.rows:
        heading = None
        if row.phase and row.phase != phase:
            phase = heading = row.phase
            y += PHASE_H
        y += ROW_H
        ys.append((row, y, heading))
    height = int(y + 70)
    width = keys_x + 260
    svg = ET.Element(
        "svg",
        xmlns="http://www.w3.org/2000/svg",
        width=str(width),
        height=str(height),
        viewBox=f"0 0 {width} {height}",
        **{"font-family": "DejaVu Sans, Arial, sans-serif", "font-size": "11"},
    )
    ET.SubElement(svg, "title").text = f"{run.scenario.name} on {run.backend}"
    ET.SubElement(svg, "desc").text = f"{run.verdict.value.upper()}: {run.message}"
    defs = ET.SubElement(svg, "defs")
    marker = ET.SubElement(
        defs,
        "marker",
        id="arrow",
        viewBox="0 0 10 10",
        refX="10",
        refY="5",
        markerWidth="7",
        markerHeight="7",
        orient="auto-start-reverse",
    )
    ET.SubElement(marker, "path", d="M 0 0 L 10 5 L 0 10 z", fill="#444")
    ET.SubElement(svg, "rect", width=str(width), height=str(height), fill="white")
    _text(
        svg,
        16,
        24,
        f"{run.scenario.name} on {run.backend} — {run.scenario.title}",
        size="15",
        weight="bold",
    )
    verdict_colour = {"pass": "#2a8a2a", "hung": "#c000c0", "unsupported": "#b08000"}.get(
        run.verdict.value, "#c62828"
    )
    _text(
        svg,
        16,
        44,
        _fit(f"{run.verdict.value.upper()}: {run.message}", width - 32, 7.2),
        fill=verdict_colour,
        size="12",
        weight="bold",
    )

    # lane heads and lifelines
    lanes = [(a, lane_x[a], colour[a], run.initiators.get(a, "")) for a in actors]
    lanes.append(("LUN", lun_x, "#444444", "logical unit"))
    for name, x, fill, sub in lanes:
        ET.SubElement(
            svg,
            "rect",
            x=str(x - 70),
            y="58",
            width="140",
            height="32",
            rx="5",
            fill=fill,
            **{"fill-opacity": "0.15", "stroke": fill},
        )
        _text(svg, x, 72, name, anchor="middle", weight="bold")
        _text(svg, x, 85, sub, anchor="middle", size="9", fill="#444")
        ET.SubElement(
            svg,
            "line",
            x1=str(x),
            y1="90",
            x2=str(x),
            y2=str(height - 40),
            stroke=fill,
            **{"stroke-dasharray": "4 4", "stroke-opacity": "0.6"},
        )
    _text(svg, bar_x, 72, "holder", weight="bold")
    _text(svg, keys_x, 72, "registered", weight="bold")
    _text(svg, keys_x, 85, keys_caption(run), size="9", fill="#444")

    last_holder: str | None = "\0"
    for row, ry, heading in ys:
        if heading:
            ET.SubElement(
                svg,
                "rect",
                x="8",
                y=str(ry - ROW_H - PHASE_H + 6),
                width=str(width - 16),
                height=str(PHASE_H - 4),
                fill="#f3f6fa",
            )
            _text(svg, 14, ry - ROW_H - 4, heading, weight="bold", fill="#335")
        _text(svg, 36, ry - 8, f"{row.step}", anchor="end", fill="#888")
        _text(svg, 44, ry - 8, f"t={row.time:g}s", fill="#888", size="9")
        # holder bar slot
        state = row.state
        fill = NONE_COLOUR
        if state is not None and state.holder == ALL_REGISTRANTS:
            fill = ALL_COLOUR
        elif state is not None and state.holder is not None:
            fill = colour.get(state.holder, ALL_COLOUR)
        ET.SubElement(
            svg,
            "rect",
            x=str(bar_x),
            y=str(ry - ROW_H + 4),
            width=str(BAR_W),
            height=str(ROW_H),
            fill=fill,
        )
        holder = holder_text(state)
        if holder != last_holder:
            _text(
                svg,
                holder_x,
                ry - 8,
                holder,
                size="10",
                weight="bold",
                fill=fill if fill != NONE_COLOUR else "#777",
            )
            last_holder = holder
        _text(svg, keys_x, ry - 8, keys_text(state, run.scenario.keys), size="9", fill="#333")
        actor_x = lane_x.get(row.actor, lun_x)
        if row.kind in (RowKind.COMMAND, RowKind.UA, RowKind.HANG):
            _arrow(svg, actor_x, lun_x, ry - 12, row)
        elif row.kind == RowKind.ACTION:
            # events of the LUN or the helper sit left of the LUN lane, clear of the holder bar
            box_w = max(120, 6 * len(row.command) + 24)
            box_x = actor_x - box_w / 2 if row.actor in lane_x else lun_x - box_w + 30
            box_x = max(box_x, LEFT)
            ET.SubElement(
                svg,
                "rect",
                x=f"{box_x:g}",
                y=str(ry - 24),
                width=str(box_w),
                height="20",
                rx="8",
                fill="#fff4d6",
                stroke="#b08000",
            )
            _text(svg, box_x + box_w / 2, ry - 10, row.command, anchor="middle", size="10")
    return svg


def _arrow(svg: ET.Element, x1: float, x2: float, y: float, row: Row) -> None:
    dim = row.kind == RowKind.UA
    ET.SubElement(
        svg,
        "line",
        x1=str(x1),
        y1=str(y),
        x2=str(x2 - 2),
        y2=str(y),
        stroke="#999" if dim else "#444",
        **{"marker-end": "url(#arrow)"},
    )
    mid = (x1 + x2) / 2
    label = row.command if len(row.command) < 60 else row.command[:57] + "…"
    _text(svg, mid, y - 3, label, anchor="middle", size="10", fill="#777" if dim else "#111")
    mark = {True: "✓ ", False: "✗ ", None: ""}[row.ok]
    result = row.result if len(row.result) < 70 else row.result[:67] + "…"
    _text(
        svg,
        mid,
        y + 11,
        mark + result,
        anchor="middle",
        size="9",
        fill=result_colour(row),
        weight="bold" if row.ok is False else "normal",
    )


def _fit(text: str, pixels: float, per_char: float) -> str:
    """Cut ``text`` to what fits in ``pixels`` at ``per_char`` (the full text is in <desc>)."""
    limit = int(pixels / per_char)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(
    parent: ET.Element,
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    size: str = "11",
    weight: str = "normal",
    fill: str = "#111",
) -> ET.Element:
    el = ET.SubElement(
        parent,
        "text",
        x=f"{x:g}",
        y=f"{y:g}",
        fill=fill,
        **{"text-anchor": anchor, "font-size": size, "font-weight": weight},
    )
    el.text = text
    return el


class SvgTargetError(RigError):
    """The SVG chart cannot be written where asked: ``cannot write SVG to 'PATH': why``."""

    def __init__(self, target: str | Path, why: str) -> None:
        self.target, self.why = str(target), why
        super().__init__(f"cannot write SVG to {shown_name(self.target)}: {why}")


def shown_name(name: str, limit: int = 80) -> str:
    """``name`` (a file or scenario name) quoted, cut to ``limit`` characters: a
    10,000-character name must not bury the error it is in."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}… ({len(name)} characters)"


def svg_target(name: str) -> Path:
    """The path ``--svg name`` writes, checked before the run so that a long run is not lost to
    a name no file can have: empty (``Path("")`` would be the current directory), a directory,
    too long, or under a path that is not a directory. A missing parent is fine (created)."""
    if not name:
        raise SvgTargetError(name, "no file name given")
    path = Path(name)
    try:
        if path.is_dir():
            raise SvgTargetError(name, "it is a directory")
        path.stat()
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:  # ENAMETOOLONG, ENOTDIR, EACCES; ValueError: a NUL byte
        raise SvgTargetError(name, reason(e)) from None
    return path


def write_svg(run: Run, path: Path) -> None:
    """Write the chart atomically enough for a CLI: parent directories are created.

    Raises SvgTargetError when the file or its directory cannot be written, so the CLI reports
    it as an error of its own instead of a traceback after the timeline."""
    tree = ET.ElementTree(svg_chart(run))
    ET.indent(tree)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tree.write(path, encoding="utf-8", xml_declaration=True)
    except (OSError, ValueError) as e:
        raise SvgTargetError(path, reason(e)) from None
