"""The medium behind READ/WRITE: sparse, so a 32 MiB LU in a test costs nothing."""

from __future__ import annotations

from typing import Protocol


class Medium(Protocol):
    def read(self, lba: int, blocks: int) -> bytes: ...

    def write(self, lba: int, data: bytes) -> None: ...


class SparseMedium:
    """Blocks never written read back as zeros."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._blocks: dict[int, bytes] = {}

    def read(self, lba: int, blocks: int) -> bytes:
        zero = bytes(self.block_size)
        return b"".join(self._blocks.get(lba + i, zero) for i in range(blocks))

    def write(self, lba: int, data: bytes) -> None:
        bs = self.block_size
        for i in range(len(data) // bs):
            self._blocks[lba + i] = data[i * bs : (i + 1) * bs]
