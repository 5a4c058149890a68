"""The command-conflict table for persistent reservations (SPC-5 5.14.1; SBC-4 4.18), written
as data.

Each command the model accepts belongs to one access class. For a reservation of a given type,
a *non-holder* I_T nexus may run a command of that class if the table says ALLOWED for its
registration state. Holders never conflict.
"""

from __future__ import annotations

from enum import Enum

from scsi_pr.sim.constants import ReservationType as T


class Access(Enum):
    #: INQUIRY, REPORT LUNS, REQUEST SENSE, TEST UNIT READY, READ CAPACITY, PR IN, LOG SENSE
    ALWAYS = "allowed under every reservation"
    #: READ, VERIFY, MODE SENSE: reads of medium or device state
    READ = "read access"
    #: WRITE, SYNCHRONIZE CACHE, MODE SELECT, START STOP UNIT: changes medium or device state
    WRITE = "write access"
    #: RESERVE/RELEASE(6/10) and PERSISTENT RESERVE OUT decide for themselves (SPC-5 5.14.3)
    OWN_RULES = "the command's own rules"


A, C = True, False  # Allowed, Conflict: the letters SPC-5 uses in its tables

# (registered non-holder, unregistered) per reservation type. Under all-registrants types a
# registered I_T nexus is a holder, so only the unregistered column ever applies there.
CONFLICT_TABLE: dict[Access, dict[T, tuple[bool, bool]]] = {
    Access.READ: {
        T.WRITE_EXCLUSIVE: (A, A),
        T.EXCLUSIVE_ACCESS: (C, C),
        T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: (A, A),
        T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: (A, C),
        T.WRITE_EXCLUSIVE_ALL_REGISTRANTS: (A, A),
        T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: (A, C),
    },
    Access.WRITE: {
        T.WRITE_EXCLUSIVE: (C, C),
        T.EXCLUSIVE_ACCESS: (C, C),
        T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: (A, C),
        T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: (A, C),
        T.WRITE_EXCLUSIVE_ALL_REGISTRANTS: (A, C),
        T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: (A, C),
    },
}


def allowed(access: Access, type_: T, registered: bool) -> bool:
    """May a non-holder with this registration state run a command of class ``access``?"""
    row = CONFLICT_TABLE.get(access)
    if row is None:
        return True
    return row[type_][0 if registered else 1]
