"""Regenerate the timelines and charts in ``docs/scenarios.md`` from real runs on ``sim``.

``python -m scsi_pr.rig.scenarios.docs`` runs every scenario, writes ``docs/scenarios/NAME.svg`` and
replaces the text between ``<!-- BEGIN timeline NAME -->`` and ``<!-- END timeline NAME -->``
with that run's timeline, so the docs show what the code does, not what someone typed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from scsi_pr import checkout_root
from scsi_pr.rig.backends import BackendUnavailable
from scsi_pr.rig.scenarios.cli import run_scenario
from scsi_pr.rig.scenarios.library import SCENARIOS
from scsi_pr.rig.scenarios.render import timeline_text, write_svg
from scsi_pr.rig.scenarios.results import Run

DOC = checkout_root() / "docs" / "scenarios.md"
WIDTH = 168
#: scenarios the model alone cannot run: they need a helper process to restart
BACKEND_FOR = {"helper-restart": "helper-sim"}
#: a block ``timeline NAME`` (at ``WIDTH`` columns, with its chart) or ``timeline-COLUMNS
#: NAME`` (the table alone at that width: the narrow form, for the section that explains it)
BLOCK = re.compile(
    r"(<!-- BEGIN timeline(?P<columns>-\d+)? (?P<name>[\w-]+) -->\n).*?"
    r"(<!-- END timeline(?P=columns)? (?P=name) -->)",
    re.S,
)


def regenerate(doc: Path = DOC) -> tuple[list[str], list[str]]:
    """Rewrite ``doc`` in place; return the scenario names whose block was refreshed and those
    left as they were because their backend cannot run here."""
    text = doc.read_text()
    done: list[str] = []
    kept: list[str] = []
    runs: dict[str, Run] = {}  # one run per scenario, for its full and its narrow block

    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in SCENARIOS:
            raise SystemExit(f"{doc}: timeline block for unknown scenario {name!r}")
        backend = BACKEND_FOR.get(name, "sim")
        try:
            # races in order: the docs must not change with which racer a run's threads favour
            run = runs.get(name) or run_scenario(SCENARIOS[name], backend, races_in_order=True)
            runs[name] = run
        except BackendUnavailable as e:
            print(f"{name}: kept the old timeline, {backend} unavailable: {e}", file=sys.stderr)
            kept.append(name)
            return m.group(0)
        columns = m.group("columns")
        if columns is None:
            write_svg(run, doc.parent / "scenarios" / f"{name}.svg")
            done.append(name)
        width = WIDTH if columns is None else int(columns[1:])
        table = "\n".join(line.rstrip() for line in timeline_text(run, width).splitlines())
        return f"{m.group(1)}```text\n{table}\n```\n{m.group(4)}"

    doc.write_text(BLOCK.sub(replace, text))
    return done, kept


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scsi_pr.rig.scenarios.docs", description=__doc__)
    p.add_argument("--doc", type=Path, default=DOC)
    args = p.parse_args(argv)
    done, kept = regenerate(args.doc)
    missing = sorted(set(SCENARIOS) - set(done) - set(kept))
    print(f"refreshed: {', '.join(done)}")
    if missing:
        print(f"no timeline block for: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
