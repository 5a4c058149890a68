"""docs/scenarios.md shows every scenario, and its generator really rewrites it from runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from scsi_pr.rig.scenarios.docs import DOC, regenerate
from scsi_pr.rig.scenarios.library import SCENARIOS


def test_every_scenario_has_a_section_timeline_and_chart() -> None:
    text = DOC.read_text()
    for name in SCENARIOS:
        assert f"### {name}\n" in text, f"no section for {name}"
        assert f"<!-- BEGIN timeline {name} -->" in text
        assert f"](scenarios/{name}.svg)" in text
        svg = DOC.parent / "scenarios" / f"{name}.svg"
        if name != "helper-restart" or svg.exists():  # helper-restart needs helper-sim
            assert ET.parse(svg).getroot().tag.endswith("svg")


def test_generator_replaces_blocks_with_real_runs(tmp_path: Path) -> None:
    doc = tmp_path / "scenarios.md"
    doc.write_text(
        "intro\n<!-- BEGIN timeline failover -->\nstale\n<!-- END timeline failover -->\nend\n"
    )
    done, kept = regenerate(doc)
    assert (done, kept) == (["failover"], [])
    text = doc.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "PREEMPT WE-RO" in text and "PASS: all" in text
    assert ET.parse(tmp_path / "scenarios" / "failover.svg").getroot().tag.endswith("svg")
