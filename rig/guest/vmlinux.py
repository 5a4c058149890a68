"""The kernel image a nested guest boots fastest: the bzImage's own ELF kernel, by PVH entry.

A distribution bzImage is a small decompressor plus the real kernel, compressed (Debian's 6.1:
xz; its 6.12: zstd).
QEMU's ``-kernel`` runs the decompressor in the guest, under TCG, and in the VM tier under TCG
inside TCG; with the firmware it was more than half of a nested boot (measured on the host's
plain TCG: 7.1 s to power-off with the bzImage, 3.2 s with the extracted ELF). A kernel built
with CONFIG_PVH carries a Xen PVH entry note, and QEMU boots such an ELF ``-kernel`` directly
(no decompression, no real-mode setup); so we decompress once, on the CPU we run on, and hand
QEMU the ELF. Anything else (an unknown compression, no PVH note) keeps the bzImage.

Layouts: the x86 boot protocol (Documentation/arch/x86/boot.rst: ``setup_sects`` at 0x1f1, "HdrS"
at 0x202, ``payload_offset``/``payload_length`` at 0x248 since protocol 2.08) and ELF64 program
headers with ``PT_NOTE`` segments (the PVH note: name "Xen", type 18, XEN_ELFNOTE_PHYS32_ENTRY).
"""

from __future__ import annotations

import lzma
import os
import struct
import zlib
from pathlib import Path

SETUP_SECTS_OFFSET = 0x1F1
HEADER_MAGIC_OFFSET, HEADER_MAGIC = 0x202, b"HdrS"
VERSION_OFFSET = 0x206
PAYLOAD_OFFSET = 0x248  # u32 payload_offset, u32 payload_length (protocol 2.08+)
MIN_PAYLOAD_VERSION = 0x0208
SECTOR = 512
ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18
XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def payload(bzimage: bytes) -> bytes | None:
    """The compressed kernel inside a bzImage, or None if it is not one (protocol < 2.08)."""
    if len(bzimage) < PAYLOAD_OFFSET + 8:
        return None
    if bzimage[HEADER_MAGIC_OFFSET : HEADER_MAGIC_OFFSET + 4] != HEADER_MAGIC:
        return None
    (version,) = struct.unpack_from("<H", bzimage, VERSION_OFFSET)
    if version < MIN_PAYLOAD_VERSION:
        return None
    setup_sects = bzimage[SETUP_SECTS_OFFSET] or 4  # 0 means 4 (boot protocol)
    offset, length = struct.unpack_from("<II", bzimage, PAYLOAD_OFFSET)
    start = (setup_sects + 1) * SECTOR + offset
    data = bzimage[start : start + length]
    return data if len(data) == length else None


def decompress(data: bytes) -> bytes | None:
    """xz and gzip (the stdlib), zstd (the ``zstandard`` package, the ``vm`` extra: the stdlib
    reads zstd only from Python 3.14); None for the others (lz4, lzo, bzip2), for zstd without
    the package, and for a stream that is cut or damaged."""
    if data.startswith(ZSTD_MAGIC):
        return _zstd(data)
    decompressor: lzma.LZMADecompressor | zlib._Decompress
    if data.startswith(XZ_MAGIC):
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    elif data.startswith(GZIP_MAGIC):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        return None
    try:
        # the build appends the uncompressed size after the stream: left unread
        out = decompressor.decompress(data)
    except (lzma.LZMAError, zlib.error, EOFError):
        return None
    return out if decompressor.eof else None  # a cut stream is no kernel


def _zstd(data: bytes) -> bytes | None:
    try:
        import zstandard
    except ImportError:  # the bzImage then boots as it is: slower under TCG, not wrong
        return None
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = decompressor.decompress(data)  # one frame; the appended size is left unread
    except zstandard.ZstdError:
        return None
    return out if decompressor.eof else None


def has_pvh_entry(elf: bytes) -> bool:
    """Does this ELF64 carry the PVH entry note QEMU needs to boot it as ``-kernel``?"""
    if not elf.startswith(ELF_MAGIC) or len(elf) < 64 or elf[4] != ELFCLASS64:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 56 > len(elf):
            return False
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, at)
        if p_type == PT_NOTE and _notes_have_pvh(elf[p_offset : p_offset + p_filesz]):
            return True
    return False


def _notes_have_pvh(notes: bytes) -> bool:
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, at)
        name = notes[at + 12 : at + 12 + namesz].rstrip(b"\0")
        if name == b"Xen" and kind == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        at += 12 + _aligned(namesz) + _aligned(descsz)
    return False


def _aligned(n: int) -> int:
    return (n + 3) & ~3


def boot_kernel(bzimage: Path, workdir: Path) -> Path:
    """The ELF kernel inside ``bzimage`` written to ``workdir`` (reused when already there), if
    it boots by PVH; else ``bzimage`` itself."""
    st = bzimage.stat()
    out = workdir / f"{bzimage.name}-{st.st_size}-{int(st.st_mtime)}.pvh.elf"
    if out.exists():
        return out
    compressed = payload(bzimage.read_bytes())
    elf = None if compressed is None else decompress(compressed)
    if elf is None or not has_pvh_entry(elf):
        return bzimage
    workdir.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(f".{os.getpid()}.part")
    part.write_bytes(elf)
    part.replace(out)  # whole or absent: a reader never boots half a kernel
    return out
