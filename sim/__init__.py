"""A pure-Python SCSI logical unit with complete SPC-5 persistent-reservation state.

Sans-IO: ``LogicalUnit.execute(nexus, cdb, data)`` returns a ``CommandResult``; nothing in the
model touches files, sockets, clocks or threads. Persistence (APTPL) and faults are hooks the
caller supplies.

Every ``SPC-5 x.y`` citation in this package is a clause of SPC-5 revision 17, never a table
number; docs/model.md ("Standard") lists the canonical clause for each PR topic.
"""

from scsi_pr.sim.constants import (
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ReservationType,
    SenseKey,
    Status,
)
from scsi_pr.sim.describe import describe
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult, SenseData
from scsi_pr.sim.transportid import TransportId

__all__ = [
    "CommandResult",
    "ITNexus",
    "LogicalUnit",
    "PersistentReserveInAction",
    "PersistentReserveOutAction",
    "ReservationType",
    "SenseData",
    "SenseKey",
    "Status",
    "TransportId",
    "describe",
]
