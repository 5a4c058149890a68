"""docs/scenarios.md shows every scenario, and its generator really rewrites it from runs."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.rig.scenarios.docs import DOC, main, regenerate
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


def test_the_docs_show_what_the_code_renders_now(tmp_path: Path) -> None:
    """Every committed timeline and chart is what a run renders today, to the byte: a change
    to what a run shows (a column, a word, a colour, an arrow) fails here until the docs are
    regenerated (``python -m scsi_pr.rig.scenarios.docs``), so the docs stay true and every
    rendering decision is pinned."""
    doc = tmp_path / "scenarios.md"
    shutil.copy(DOC, doc)
    done, kept = regenerate(doc)
    if kept:
        unavailable(f"cannot run {kept} here (helper-sim)")
    assert sorted(done) == sorted(SCENARIOS)
    assert doc.read_text() == DOC.read_text(), "run: python -m scsi_pr.rig.scenarios.docs"
    for name in SCENARIOS:
        chart = f"scenarios/{name}.svg"
        assert (tmp_path / chart).read_bytes() == (DOC.parent / chart).read_bytes(), chart


def test_a_block_with_columns_is_the_table_alone_at_that_width(tmp_path: Path) -> None:
    """``timeline-80 NAME``: the narrow table, no chart written and not counted as the
    scenario's section (that is the full block's)."""
    doc = tmp_path / "scenarios.md"
    doc.write_text("<!-- BEGIN timeline-80 failover -->\n<!-- END timeline-80 failover -->\n")
    assert regenerate(doc) == ([], [])
    lines = doc.read_text().splitlines()
    assert lines[1] == "```text" and lines[-2] == "```"
    assert max(len(line) for line in lines) <= 80
    assert lines[4].startswith("┃ # ┃ who   ┃ command")  # the narrow form's columns
    assert not (tmp_path / "scenarios").exists()


def test_the_generator_s_command_says_what_it_refreshed_and_what_has_no_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m scsi_pr.rig.scenarios.docs --doc FILE``: exit 0 when every scenario has
    its block, else 1 naming those without; a block for a scenario that does not exist stops
    it with the file's name."""
    doc = tmp_path / "scenarios.md"
    shutil.copy(DOC, doc)
    assert main(["--doc", str(doc)]) == 0
    out, err = capsys.readouterr()
    assert out == f"refreshed: {', '.join(SCENARIOS)}\n" and err == ""
    doc.write_text("<!-- BEGIN timeline failover -->\n<!-- END timeline failover -->\n")
    assert main(["--doc", str(doc)]) == 1
    out, err = capsys.readouterr()
    others = sorted(set(SCENARIOS) - {"failover"})
    assert (out, err) == ("refreshed: failover\n", f"no timeline block for: {', '.join(others)}\n")
    doc.write_text("<!-- BEGIN timeline nope -->\n<!-- END timeline nope -->\n")
    with pytest.raises(SystemExit) as e:
        main(["--doc", str(doc)])
    assert str(e.value) == f"{doc}: timeline block for unknown scenario 'nope'"
