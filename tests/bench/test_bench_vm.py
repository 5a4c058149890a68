"""The pure parts of ``scripts/bench --vm`` (benchmarks/helper_vm.py) and of running a benchmark
in the VM (benchmarks/in_vm.py): statistics, turns, ratios, verdicts, the table and the JSON
report, the operations' bytes. The measurement itself needs LIO (the VM)."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from benchmarks import helper_vm, in_vm
from benchmarks.__main__ import BENCHMARKS, ON_REQUEST
from benchmarks.helper_vm import (
    AIM_VS_C,
    AIM_VS_DIRECT,
    C_HELPER,
    DIRECT,
    Latency,
    document,
    operations,
    quantile,
    ratios,
    table,
    turn_order,
    verdicts,
)


def _lat(median: float) -> Latency:
    return Latency(median, median * 2, 10)


LATENCY = {
    DIRECT: {"READ KEYS": _lat(100.0), "REGISTER AND IGNORE": _lat(200.0)},
    C_HELPER: {"READ KEYS": _lat(400.0), "REGISTER AND IGNORE": _lat(500.0)},
    "sg": {"READ KEYS": _lat(420.0), "REGISTER AND IGNORE": _lat(600.0)},
}


def test_the_vm_benchmark_runs_only_when_named() -> None:
    assert BENCHMARKS["vm"] == "benchmarks.helper_vm" and "vm" in ON_REQUEST


def test_quantile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.99) == 99.0
    assert quantile(values, 0.5) == 50.0
    assert quantile([7.0], 0.99) == 7.0


def test_latency_is_in_microseconds() -> None:
    lat = Latency.of([0.003, 0.001, 0.002])
    assert lat.median_us == pytest.approx(2000.0)
    assert lat.p99_us == pytest.approx(3000.0)
    assert lat.count == 3


def test_every_path_goes_first_in_turn() -> None:
    paths = ["direct", "C", "sg"]
    firsts = [turn_order(paths, i)[0] for i in range(3)]
    assert firsts == ["direct", "C", "sg"]
    assert sorted(turn_order(paths, 1)) == sorted(paths)


def test_ratios_are_ours_over_c_and_over_direct() -> None:
    r = ratios(LATENCY)
    assert set(r) == {"sg"}  # a backend not measured (ioctl) is left out
    assert r["sg"]["READ KEYS"] == {"vs_c": pytest.approx(1.05), "vs_direct": pytest.approx(4.2)}
    assert r["sg"]["REGISTER AND IGNORE"]["vs_c"] == pytest.approx(1.2)


def test_verdicts_say_which_aims_are_met() -> None:
    lines = verdicts(ratios(LATENCY))
    read_keys, register = lines
    assert f"ours/C 1.05 (aim <= {AIM_VS_C}: met)" in read_keys
    assert f"ours/direct 4.20 (aim <= {AIM_VS_DIRECT}: not met)" in read_keys
    assert "ours/C 1.20" in register and f"{AIM_VS_C}: not met" in register


def test_the_table_shows_every_path_and_its_ratio_to_direct() -> None:
    console = Console(record=True, width=200)
    console.print(table(LATENCY, ["READ KEYS", "REGISTER AND IGNORE"]))
    text = console.export_text()
    assert "direct" in text and "sg" in text
    assert "420" in text and "840" in text and "4.20x" in text and "3.00x" in text


def test_the_json_report_holds_every_number() -> None:
    doc = document(LATENCY, {"sg": 500.0, C_HELPER: 1000.0}, {"kernel": "6.1"})
    back = json.loads(json.dumps(doc))
    assert back["latency_us"]["sg"]["READ KEYS"] == {"median": 420.0, "p99": 840.0, "count": 10}
    assert back["ratios"]["sg"]["READ KEYS"]["vs_c"] == pytest.approx(1.05)
    assert back["load_ratio_ours_to_c"] == pytest.approx(0.5)
    assert back["aims"] == {"vs_c": AIM_VS_C, "vs_direct": AIM_VS_DIRECT}
    assert back["meta"] == {"kernel": "6.1"}


def test_the_operations_are_padded_pr_cdbs_with_their_parameter_lists() -> None:
    read_keys, register = operations()
    assert read_keys.cdb[0] == 0x5E and read_keys.cdb[1] == 0 and len(read_keys.cdb) == 16
    assert int.from_bytes(read_keys.cdb[7:9], "big") == read_keys.allocation
    assert register.cdb[0] == 0x5F and register.cdb[1] & 0x1F == 0x06  # REGISTER AND IGNORE
    assert int.from_bytes(register.data[8:16], "big") == helper_vm.KEY
    assert int.from_bytes(register.cdb[5:9], "big") == len(register.data) == 24


def test_results_come_back_as_marked_lines() -> None:
    output = 'boot\nscsi-pr-bench-json: {"a": 1}\nother\nscsi-pr-bench-json: 2\n'
    assert in_vm.lines_after(output, helper_vm.JSON_MARKER) == ['{"a": 1}', "2"]


def test_a_guest_without_the_kernel_pieces_fails_instead_of_booting_a_vm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(in_vm.IN_VM, "1")
    booted = []
    monkeypatch.setattr(in_vm.vm, "run", lambda *a, **k: booted.append(a) or 0)
    assert in_vm.run_in_vm("--vm", "no LIO here") == (2, "")
    assert not booted and "the VM cannot run the benchmark: no LIO here" in capsys.readouterr().err


def test_the_host_keeps_the_guest_output_it_forwards(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(in_vm.IN_VM, "")  # not in the VM; restored after run_in_vm sets it

    def fake_run(cmd: list[str], **kwargs: object) -> int:
        assert cmd[-2:] == ["benchmarks", "--vm"]
        out = kwargs["out"]
        out.write(b"line one\nscsi-pr-bench-json: {}\n")  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(in_vm.vm, "run", fake_run)
    rc, output = in_vm.run_in_vm("--vm", "no LIO here")
    assert rc == 0 and output == "line one\nscsi-pr-bench-json: {}\n"
    assert "line one" in capsys.readouterr().out
