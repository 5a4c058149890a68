"""The kill -9 soak (``scsi_pr.helper.soak_kill``): a few rounds in CI (``scripts/soak`` runs 50),
and its judge, which must call a lost or a resurrected command what it is."""

from __future__ import annotations

from pathlib import Path

from scsi_pr.helper.soak_kill import KillReport, _Initiator, _judge, _older, kill_rounds


def test_a_few_kill_rounds_lose_nothing(tmp_path: Path) -> None:
    report = kill_rounds(tmp_path / "soak", rounds=3, seed=10)
    assert report.ok, "\n".join(report.lines())
    assert report.rounds == 3 and report.kills >= 3
    assert report.acknowledged > 0 and report.in_flight <= report.kills
    assert report.lines()[0].split() == ["rounds", "3"]


def test_the_judge_tells_lost_from_resurrected() -> None:
    it = _Initiator(0, "naa.5001405000000001", Path("s"), Path("l"), [])
    it.history = [(1, False), (1, True), (2, True)]
    it.pending = (2, False)
    report = KillReport()
    for seen in [(2, True), (2, False)]:  # the acknowledged state, or the one in flight
        _judge(it, seen, 1, report)
    assert report.ok
    for seen in [(1, True), (None, False)]:  # an acknowledged command missing
        _judge(it, seen, 1, report)
    _judge(it, (3, False), 1, report)  # never acknowledged nor in flight
    assert (len(report.lost), len(report.resurrected)) == (2, 1)
    assert _older(it, (1, False), than=(2, True)) and not _older(it, (2, False), than=(2, True))
