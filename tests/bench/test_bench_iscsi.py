"""The pure parts of ``scripts/bench --iscsi`` (benchmarks/iscsi.py): fio's JSON report, the
comparison table and the aim's verdict. The measurement itself needs the VM."""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import queue
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from benchmarks.__main__ import BENCHMARKS, ON_REQUEST
from benchmarks.iscsi import (
    AIM,
    JOBS,
    LIO,
    OURS,
    Comparison,
    FioOutputError,
    FioResult,
    Job,
    aim_verdict,
    own_time_by_place,
    parse_fio,
    profile_report,
    profiled_start,
    table,
    turns,
)

# Recorded with fio-3.33 (--rw=randwrite --iodepth=8 --lat_percentiles=1 --output-format=json),
# trimmed to the fields the parser reads and a few around them; the note line stands for what
# fio may print ahead of its JSON.
FIO_RANDWRITE = """fio: note: both iodepth >= 1 and synchronous I/O engine are selected
{
 "fio version": "fio-3.33",
 "jobs": [
  {
   "jobname": "bench",
   "error": 0,
   "job options": {"rw": "randwrite", "iodepth": "8", "bs": "4k", "lat_percentiles": "1"},
   "read": {
    "io_bytes": 0, "iops": 0.0, "runtime": 0, "total_ios": 0,
    "clat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0},
    "lat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0}
   },
   "write": {
    "io_bytes": 41717760, "iops": 10174.825175, "runtime": 1001, "total_ios": 10185,
    "clat_ns": {
     "min": 711, "max": 228718588, "mean": 749973.305842, "stddev": 7277811.884294, "N": 10185,
     "percentile": {"50.000000": 207872, "90.000000": 602112, "99.000000": 4816896,
                    "99.900000": 101187584}
    },
    "lat_ns": {
     "min": 15473, "max": 228723926, "mean": 784637.883652, "stddev": 7346136.888471,
     "N": 10185,
     "percentile": {"50.000000": 224256, "90.000000": 659456, "99.000000": 4882432,
                    "99.900000": 101187584}
    }
   }
  }
 ]
}
"""


def test_parse_fio_reads_the_jobs_direction_and_total_latency() -> None:
    result = parse_fio(FIO_RANDWRITE, "write")
    assert result.iops == pytest.approx(10174.825175)
    assert result.mean_us == pytest.approx(784.637883652)  # lat_ns, not clat_ns
    assert result.p99_us == pytest.approx(4882.432)


def test_parse_fio_refuses_a_direction_without_io() -> None:
    with pytest.raises(FioOutputError, match="no reads"):
        parse_fio(FIO_RANDWRITE, "read")


def test_parse_fio_refuses_a_failed_job_and_garbage() -> None:
    report = json.loads(FIO_RANDWRITE[FIO_RANDWRITE.index("{") :])
    report["jobs"][0]["error"] = 5
    with pytest.raises(FioOutputError, match="error 5"):
        parse_fio(json.dumps(report), "write")
    for garbage in ("", "fio: /dev/sdz: No such file or directory\n", "{not json", '{"jobs": []}'):
        with pytest.raises(FioOutputError):
            parse_fio(garbage, "write")


def test_job_argv_has_the_fixed_options_and_its_own() -> None:
    argv = Job("randwrite", 8).argv("/dev/sdb", 7)
    for option in ("--direct=1", "--ioengine=libaio", "--bs=4k", "--rw=randwrite",
                   "--iodepth=8", "--runtime=7", "--time_based", "--filename=/dev/sdb",
                   "--output-format=json", "--lat_percentiles=1"):  # fmt: skip
        assert option in argv
    assert [j.direction for j in JOBS] == ["read", "read", "write", "write"]


def test_turns_alternate_who_goes_first() -> None:
    order = turns(JOBS)
    assert len(order) == 2 * len(JOBS)
    firsts = [who for job, who in order[::2]]
    assert firsts == [OURS, LIO, OURS, LIO]
    for index, job in enumerate(JOBS):  # each job on both targets, back to back
        assert {who for j, who in order[2 * index : 2 * index + 2] if j == job} == {OURS, LIO}


def _row(job: Job, ours: float, lio: float) -> Comparison:
    return Comparison(job, FioResult(ours, 1500.0, 9000.0), FioResult(lio, 350.0, 1200.0))


def test_ratio_is_ours_over_lio() -> None:
    assert _row(JOBS[0], 300, 1000).ratio == pytest.approx(0.3)
    assert _row(JOBS[0], 300, 0).ratio == float("inf")


def test_aim_verdict_met_and_not_met() -> None:
    met = [_row(JOBS[0], 400, 1000), _row(JOBS[1], 300, 1000)]
    assert aim_verdict(met).endswith(f"met (lowest {AIM:.2f}x, {JOBS[1]})")
    short = [_row(JOBS[0], 400, 1000), _row(JOBS[2], 100, 1000)]
    verdict = aim_verdict(short)
    assert "not met on 1 of 2" in verdict and "randwrite QD1 0.10x" in verdict


def test_table_shows_both_targets_and_the_ratio() -> None:
    console = Console(record=True, width=160)
    console.print(table([_row(JOBS[1], 1234, 4936)]))
    text = console.export_text()
    assert "randread QD8" in text
    assert "1,234" in text and "4,936" in text and "0.25x" in text
    assert "1.50" in text and "9.00" in text  # ours: mean and p99 in ms
    assert "0.35" in text and "1.20" in text  # LIO's


def test_iscsi_runs_only_when_named() -> None:
    assert BENCHMARKS["iscsi"] == "benchmarks.iscsi" and "iscsi" in ON_REQUEST


def testprofiled_start_profiles_every_thread_of_a_started_python(tmp_path: Path) -> None:
    out = tmp_path / "target.prof"
    code = "import threading\ndef in_worker(): sum(range(1000))\n" + (
        "t = threading.Thread(target=in_worker); t.start(); t.join()\n"
    )
    with profiled_start(out):
        subprocess.run([sys.executable, "-c", code], check=True)
    subprocess.run([sys.executable, "-c", "pass"], check=True)  # after: not profiled
    assert "PYTHONPATH" not in os.environ or str(tmp_path) not in os.environ["PYTHONPATH"]
    report = profile_report(out)
    assert "(2 threads)" in report and "in_worker" in report
    assert "no profile" in profile_report(tmp_path / "other.prof")


def test_own_time_by_place_leaves_the_idle_waits_out() -> None:
    profile = cProfile.Profile()
    profile.enable()
    waiting: queue.SimpleQueue[int] = queue.SimpleQueue()
    waiting.put(1)
    waiting.get()
    sorted(range(100_000), key=lambda n: -n)
    profile.disable()
    places = dict((place, own) for own, place in own_time_by_place(pstats.Stats(profile)))
    assert "<method 'get' of '_queue.SimpleQueue' objects>" not in places
    assert "<built-in method builtins.sorted>" in places
    assert "bench/test_bench_iscsi.py" in places  # the lambda: a file, shortened
