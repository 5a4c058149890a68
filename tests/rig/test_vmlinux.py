"""The kernel a nested guest boots: the ELF inside a bzImage where it has a PVH entry."""

from __future__ import annotations

import gzip
import lzma
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from needs import unavailable

from scsi_pr.rig.guest.vmlinux import boot_kernel, decompress, has_pvh_entry, payload


def note(name: bytes, kind: int, desc: bytes = b"\0\0\0\0") -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name) + 1, len(desc), kind) + pad(name + b"\0") + pad(desc)


def elf(*notes: bytes) -> bytes:
    """An ELF64 header, one PT_NOTE program header, the notes."""
    body = b"".join(notes)
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQ", 4, 0, 64 + 56, 0, 0, len(body)).ljust(56, b"\0")
    return bytes(header) + phdr + body


PVH = elf(note(b"GNU", 3), note(b"Xen", 18))
NO_PVH = elf(note(b"GNU", 3), note(b"Xen", 17))


def bzimage(compressed: bytes, version: int = 0x020F, setup_sects: int = 1) -> bytes:
    offset = 16
    image = bytearray((max(setup_sects, 1) + 1) * 512 + offset)
    image[0x1F1] = setup_sects
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, version)
    struct.pack_into("<II", image, 0x248, offset, len(compressed))
    return bytes(image) + compressed + b"\x11\x22\x33\x44"  # the size word the build appends


def test_the_pvh_note_is_found_among_others_and_only_with_its_type() -> None:
    assert has_pvh_entry(PVH)
    assert not has_pvh_entry(NO_PVH)
    assert not has_pvh_entry(b"MZ" + PVH[2:])  # not an ELF
    assert not has_pvh_entry(PVH[:4] + b"\x01" + PVH[5:])  # ELF32


def zstd_compress(data: bytes) -> bytes:
    """As the kernel's build packs it: one frame, its size not in the header (streamed)."""
    obj = zstandard_or_unavailable().ZstdCompressor(write_content_size=False).compressobj()
    return bytes(obj.compress(data) + obj.flush())


def zstandard_or_unavailable() -> Any:
    try:
        import zstandard
    except ImportError:
        unavailable("zstandard is not installed (pip install -e '.[vm]')")
    return zstandard


@pytest.mark.parametrize(
    "compress", [lzma.compress, gzip.compress, zstd_compress], ids=["xz", "gzip", "zstd"]
)
def test_the_payload_is_cut_by_the_boot_header_and_decompressed(compress) -> None:
    """Debian's 6.1 packs its kernel with xz, its 6.12 with zstd."""
    packed = compress(PVH)
    assert payload(bzimage(packed)) == packed
    assert decompress(packed) == PVH
    assert decompress(packed + b"\x11\x22\x33\x44") == PVH  # the size word after the stream


def test_zstd_without_the_package_keeps_the_bzimage(monkeypatch: pytest.MonkeyPatch) -> None:
    packed = zstd_compress(PVH)
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import fails
    assert decompress(packed) is None


def test_not_a_bzimage_or_too_old_or_unknown_compression_gives_nothing() -> None:
    packed = lzma.compress(PVH)
    assert payload(bytes(4096)) is None
    assert payload(bzimage(packed, version=0x0207)) is None
    assert payload(bzimage(packed)[:-10]) is None  # cut short
    assert decompress(b"\x04\x22\x4d\x18" + packed) is None  # lz4: not read
    assert decompress(b"\x28\xb5\x2f\xfd" + packed) is None  # zstd magic, no zstd frame
    assert decompress(lzma.compress(PVH)[:40]) is None  # truncated stream
    assert decompress(zstd_compress(PVH)[:40]) is None


def test_setup_sects_zero_means_four() -> None:
    packed = lzma.compress(PVH)
    image = bytearray(bzimage(packed, setup_sects=4))
    image[0x1F1] = 0
    assert payload(bytes(image)) == packed


def test_boot_kernel_extracts_once_and_keeps_a_bzimage_without_pvh(tmp_path: Path) -> None:
    good, plain = tmp_path / "vmlinuz-good", tmp_path / "vmlinuz-plain"
    good.write_bytes(bzimage(lzma.compress(PVH)))
    plain.write_bytes(bzimage(lzma.compress(NO_PVH)))
    out = boot_kernel(good, tmp_path / "work")
    assert out != good and out.read_bytes() == PVH
    out.write_bytes(b"cached")  # a second call reuses the file
    assert boot_kernel(good, tmp_path / "work").read_bytes() == b"cached"
    assert boot_kernel(plain, tmp_path / "work") == plain
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [out.name]  # no .part left
