"""One step the model tests share: send a PERSISTENT RESERVE OUT to a ``LogicalUnit``.

Importable from the tests in this folder (pytest puts a test file's folder on ``sys.path``).
"""

from __future__ import annotations

from scsi_pr.sim import cdb as C
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult


def out(
    lu: LogicalUnit,
    nexus: ITNexus,
    action: int,
    key: int = 0,
    sa_key: int = 0,
    type_: int = 0,
    **kw: object,
) -> CommandResult:
    """PR OUT ``action`` with RESERVATION KEY ``key``, SERVICE ACTION RESERVATION KEY
    ``sa_key`` and TYPE ``type_``; ``kw`` are ``scsi_pr.sim.cdb.prout``'s flags."""
    return lu.execute(nexus, *C.prout(action, key, sa_key, type_, **kw))  # type: ignore[arg-type]
