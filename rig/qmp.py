"""A minimal QMP client: just enough to ask QEMU whether its pr-manager is connected.

Used by the guest end-to-end run (``query-pr-managers`` before each helper stops) and by the
helper's QEMU connection test (``object-add`` of a second manager).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scsi_pr.rig.errors import RigError


class QmpError(RigError):
    """QEMU's monitor did not greet, closed the connection, or answered a command with an error."""


class Qmp:
    """Greeting, ``qmp_capabilities``, then commands; events that arrive meanwhile are kept."""

    def __init__(
        self, path: Path, timeout: float = 30.0, alive: Callable[[], bool] | None = None
    ) -> None:
        """Connect to the monitor at ``path`` as soon as it listens, for ``timeout`` seconds;
        ``alive`` (QEMU's process still runs) ends the wait at once when QEMU has exited."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if alive is not None and not alive():
                    raise QmpError("QEMU exited before its monitor listened") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")
        self.events: list[dict[str, Any]] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise QmpError("QMP connection closed")
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise QmpError(f"QMP {command}: {reply['error']}")
            elif "return" in reply:
                return reply["return"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()
