"""Fixtures of the helper tests: an LU image, fds on it, a state directory, a running sim
helper, and the real sg_persist on recorded answers (``sg_persist_oracle``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_process import Helper
from main_driver import main_process, privileges  # noqa: F401 (fixtures of main in process)
from sg_persist_oracle import oracle, shim  # noqa: F401 (fixtures of the sg_persist oracle)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(1 << 16))
    return path


@pytest.fixture
def device(image: Path) -> Iterator[int]:
    """The image opened read-write: the fd a client passes with its requests."""
    fd = os.open(image, os.O_RDWR)
    yield fd
    os.close(fd)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def helper(tmp_path: Path, state_dir: Path) -> Iterator[Helper]:
    h = Helper(tmp_path, "h1", "--state-dir", str(state_dir))
    yield h
    h.stop()


@pytest.fixture
def open_image(image: Path) -> Iterator[Callable[[int], int]]:
    fds: list[int] = []

    def opener(flags: int = os.O_RDWR) -> int:
        fds.append(os.open(image, flags))
        return fds[-1]

    yield opener
    for fd in fds:
        os.close(fd)
