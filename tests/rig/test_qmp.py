"""The QMP client's connect (``rig.qmp.Qmp``): it waits for a monitor that is coming, and stops
waiting as soon as the QEMU it belongs to has exited. Commands against a real QEMU:
tests/rig/test_guest.py and test_guest_snapshot.py."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from scsi_pr.rig import qmp
from scsi_pr.rig.qmp import Qmp, QmpError


def test_the_monitor_wait_ends_when_qemu_has_exited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_wait(seconds: float) -> None:
        raise AssertionError("waited for a monitor whose QEMU had exited")

    monkeypatch.setattr(qmp.time, "sleep", no_wait)
    with pytest.raises(QmpError) as caught:
        Qmp(tmp_path / "qmp.sock", alive=lambda: False)
    assert str(caught.value) == "QEMU exited before its monitor listened"


def test_without_a_process_to_ask_the_wait_is_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Qmp(tmp_path / "qmp.sock", timeout=0.0)


class Monitor:
    """A QMP server that greets, then answers each command from ``script`` (one list of
    reply objects per command) and records what it was sent."""

    def __init__(self, path: Path, script: list[list[dict[str, Any]]], greeting: dict) -> None:
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.received: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._serve, args=(script, greeting), daemon=True)
        self.thread.start()

    def _serve(self, script: list[list[dict[str, Any]]], greeting: dict) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(json.dumps(greeting).encode() + b"\n")
            f.flush()
            for replies in script:
                line = f.readline()
                if not line:
                    return
                self.received.append(json.loads(line))
                for reply in replies:
                    f.write(json.dumps(reply).encode() + b"\n")
                f.flush()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(30)


GREETING = {"QMP": {"version": {}, "capabilities": []}}
OK: list[dict[str, Any]] = [{"return": {}}]


def test_commands_get_their_return_and_events_are_kept(tmp_path: Path) -> None:
    event = {"event": "RESUME", "data": {}}
    script = [OK, [event, {"return": [{"id": "pr0"}]}], [{"return": {}}]]
    monitor = Monitor(tmp_path / "qmp.sock", script, GREETING)
    client = Qmp(tmp_path / "qmp.sock")
    try:
        assert client.execute("query-pr-managers") == [{"id": "pr0"}]
        assert client.events == [event]
        assert client.execute("device_add", driver="scsi-block", id="d0") == {}
    finally:
        client.close()
        monitor.close()
    assert monitor.received == [
        {"execute": "qmp_capabilities"},  # no empty "arguments"
        {"execute": "query-pr-managers"},
        {"execute": "device_add", "arguments": {"driver": "scsi-block", "id": "d0"}},
    ]


def test_an_error_answer_names_the_command(tmp_path: Path) -> None:
    script = [OK, [{"error": {"class": "GenericError", "desc": "no such device"}}]]
    monitor = Monitor(tmp_path / "qmp.sock", script, GREETING)
    client = Qmp(tmp_path / "qmp.sock")
    try:
        with pytest.raises(QmpError) as caught:
            client.execute("device_del", id="d9")
    finally:
        client.close()
        monitor.close()
    assert str(caught.value) == (
        "QMP device_del: {'class': 'GenericError', 'desc': 'no such device'}"
    )


def test_a_monitor_that_does_not_greet_or_closes_is_refused(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "a.sock", [], {"hello": 1})
    with pytest.raises(QmpError) as caught:
        Qmp(tmp_path / "a.sock")
    monitor.close()
    assert str(caught.value) == "not a QMP greeting: {'hello': 1}"
    monitor = Monitor(tmp_path / "b.sock", [[]], GREETING)  # takes a command, closes unanswered
    with pytest.raises(QmpError) as caught:
        Qmp(tmp_path / "b.sock")
    monitor.close()
    assert str(caught.value) == "QMP connection closed"
