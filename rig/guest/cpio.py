"""The "newc" (070701) cpio format, the one the kernel's initramfs unpacker reads.

Written here rather than by a ``cpio`` binary so the archive is reproducible (zero timestamps
and owners) and needs nothing installed; the reader exists for tests and for looking inside a
built initramfs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scsi_pr.rig.errors import RigError

S_IFDIR, S_IFREG, S_IFLNK = 0o040000, 0o100000, 0o120000
MAGIC = b"070701"
TRAILER = "TRAILER!!!"
#: magic plus 13 fields of eight hex digits
HEADER_SIZE = 110


class NotNewc(RigError, ValueError):
    """The bytes are not a newc archive."""


@dataclass(frozen=True)
class Entry:
    """One archive member; ``data`` is the file body or, for a symlink, its target."""

    path: str
    mode: int
    data: bytes = b""


def newc_archive(entries: Iterable[Entry]) -> bytes:
    """An uncompressed newc archive of ``entries``, then the trailer.

    Timestamps and owners are zero so the same inputs always give the same bytes.
    """
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry(TRAILER, 0)], start=1):
        name = entry.path.lstrip("/").encode() + b"\0"
        fields = (
            ino,
            entry.mode,
            0,  # uid
            0,  # gid
            2 if entry.mode & 0o170000 == S_IFDIR else 1,  # nlink
            0,  # mtime
            len(entry.data),
            0,  # devmajor
            0,  # devminor
            0,  # rdevmajor
            0,  # rdevminor
            len(name),
            0,  # check
        )
        out += MAGIC + "".join(f"{f:08x}" for f in fields).encode()
        out += name
        out += bytes(-len(out) % 4)
        out += entry.data
        out += bytes(-len(out) % 4)
    return bytes(out)


def read_newc(archive: bytes) -> dict[str, Entry]:
    """Parse a newc archive back, up to its trailer."""
    entries: dict[str, Entry] = {}
    pos = 0
    while True:
        if archive[pos : pos + 6] != MAGIC:
            raise NotNewc(f"not a newc header at offset {pos}")
        fields = [int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        pos += HEADER_SIZE
        name = archive[pos : pos + namesize - 1].decode()
        pos += namesize
        pos += -pos % 4
        data = archive[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == TRAILER:
            return entries
        entries[name] = Entry(name, mode, data)
