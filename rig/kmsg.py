"""The kernel's log (/dev/kmsg), read for LIO's broken PR reference count.

Measured on Debian 12's 6.1 (tcm_loop, ramdisk): REGISTER AND MOVE makes the kernel warn
``refcount_t: addition on 0; use-after-free`` in ``core_get_se_deve_from_rtpi`` or
``__core_scsi3_do_alloc_registration`` (then ``underflow``, ``saturated``): LIO's reference
count on a LUN mapping for PR registrations breaks. The commands still answer as measured. After
a dm-multipath map was built over the rig, removing the LUN then waits forever
(``core_disable_device_list_for_node``, D state), so such a rig is left to the VM's end
(``backend_lio``), and this warning is what its message quotes; a rig that needs rebuilding
after such a fault gets a new generation beside the one there instead of removing it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator

KMSG = "/dev/kmsg"
#: records after a ``refcount_t:`` warning that its call trace may span
TRACE_RECORDS = 60
#: a frame of LIO's core module in a call trace
LIO_FRAME = "[target_core_mod]"


def parse(raw: bytes) -> str | None:
    """The text of one /dev/kmsg record (``prio,seq,usec,flags;text`` and its dictionary
    lines), or None for what is not a record."""
    head, sep, text = raw.decode(errors="replace").partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3 or not fields[1].isdigit():
        return None
    return text.split("\n", 1)[0]


def records(path: str = KMSG) -> Iterator[str]:
    """The text of every record the kernel still holds, oldest first (non-blocking: ends at
    the newest)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        while True:
            try:
                raw = os.read(fd, 8192)
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten while we read: skip to the next
                    continue
                return  # EAGAIN: no more records
            if not raw:
                return
            if (text := parse(raw)) is not None:
                yield text
    finally:
        os.close(fd)


def lio_refcount_faults(log: Iterable[str]) -> list[str]:
    """The ``refcount_t`` warnings whose call trace runs through LIO's core module: one line
    each (the warning and LIO's first frame)."""
    found: list[str] = []
    warning: str | None = None
    left = 0
    for text in log:
        if "refcount_t:" in text:
            warning, left = text.strip(), TRACE_RECORDS
        elif warning is not None and left > 0:
            left -= 1
            if LIO_FRAME in text and "+0x" in text:  # a frame, not its header
                found.append(f"{warning} in {text.strip()}")
                warning = None
    return found
