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
    # Two classes only LIO's classifier uses (the lio profiles file commands under them, see
    # ``commands.LIO_ACCESS``; spc-persistent-reservations.md §5 "How LIO actually decides"):
    #: MODE SENSE on LIO: a read every registered I_T nexus may do, under EA too
    READ_IF_REGISTERED = "read access, allowed to registered I_T nexuses (LIO)"
    #: SYNCHRONIZE CACHE, START STOP UNIT, VERIFY on LIO: no data transfer
    NO_DATA = "no data transfer (LIO)"


A, C = True, False  # Allowed, Conflict: the words SPC-5 uses in its tables
R, W = Access.READ, Access.WRITE
RR, ND = Access.READ_IF_REGISTERED, Access.NO_DATA  # LIO's classes: only the lio profiles

# One row per reservation type, as SPC-5 lays out its columns: for each access class, may a
# (registered non-holder, unregistered) I_T nexus run the command? Under all-registrants types a
# registered I_T nexus is a holder, so only the unregistered entry ever applies there. The RR
# and ND columns are LIO's (measured on 6.1, tests/conformance/test_conf_conflicts.py): MODE
# SENSE is refused only to unregistered I_T nexuses under the EA types; a command without data
# is refused to a registered non-holder under WE, allowed to an unregistered one under WE types.
CONFLICT_TABLE: dict[T, dict[Access, tuple[bool, bool]]] = {
    T.WRITE_EXCLUSIVE: {R: (A, A), W: (C, C), RR: (A, A), ND: (C, A)},
    T.EXCLUSIVE_ACCESS: {R: (C, C), W: (C, C), RR: (A, C), ND: (C, C)},
    T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: {R: (A, A), W: (A, C), RR: (A, A), ND: (A, A)},
    T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: {R: (A, C), W: (A, C), RR: (A, C), ND: (A, C)},
    T.WRITE_EXCLUSIVE_ALL_REGISTRANTS: {R: (A, A), W: (A, C), RR: (A, A), ND: (A, A)},
    T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: {R: (A, C), W: (A, C), RR: (A, C), ND: (A, C)},
}


def allowed(access: Access, type_: T, registered: bool) -> bool:
    """May a non-holder with this registration state run a command of class ``access``?"""
    entry = CONFLICT_TABLE[type_].get(access)
    if entry is None:  # ALWAYS, OWN_RULES
        return True
    return entry[0 if registered else 1]
