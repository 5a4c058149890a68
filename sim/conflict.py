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


A, C = True, False  # Allowed, Conflict: the words SPC-5 uses in its tables

# One row per reservation type, as SPC-5 lays out its columns: for each access class, may a
# (registered non-holder, unregistered) I_T nexus run the command? Under all-registrants types a
# registered I_T nexus is a holder, so only the unregistered entry ever applies there.
CONFLICT_TABLE: dict[T, dict[Access, tuple[bool, bool]]] = {
    T.WRITE_EXCLUSIVE: {Access.READ: (A, A), Access.WRITE: (C, C)},
    T.EXCLUSIVE_ACCESS: {Access.READ: (C, C), Access.WRITE: (C, C)},
    T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: {Access.READ: (A, A), Access.WRITE: (A, C)},
    T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: {Access.READ: (A, C), Access.WRITE: (A, C)},
    T.WRITE_EXCLUSIVE_ALL_REGISTRANTS: {Access.READ: (A, A), Access.WRITE: (A, C)},
    T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: {Access.READ: (A, C), Access.WRITE: (A, C)},
}


def allowed(access: Access, type_: T, registered: bool) -> bool:
    """May a non-holder with this registration state run a command of class ``access``?"""
    entry = CONFLICT_TABLE[type_].get(access)
    if entry is None:  # ALWAYS, OWN_RULES
        return True
    return entry[0 if registered else 1]
