"""LogicalUnit: the public face of the model (work in progress: full model lands next)."""

from __future__ import annotations

from collections.abc import Sequence

from sim.nexus import ITNexus
from sim.result import CommandResult


class LogicalUnit:
    def __init__(self, *, target_ports: Sequence[int] = (1, 2), **_: object) -> None:
        self.target_ports = tuple(target_ports)

    def execute(self, nexus: ITNexus, cdb: bytes, data: bytes = b"") -> CommandResult:
        raise NotImplementedError

    def power_loss(self) -> None:
        raise NotImplementedError

    def power_on(self) -> None:
        raise NotImplementedError
