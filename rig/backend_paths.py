"""Helper backends on the other ways to a device: ``helper-lio-ioctl`` (the block layer's PR
ioctls on /dev/sdX) and ``helper-lio-mpath`` (a dm-multipath map over two of the LIO rig's
ports, through libmpathpersist). Both are ``helper-lio`` with another fd handed to the helper.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
from pathlib import Path
from typing import ClassVar

from scsi_pr.helper.executors import limits
from scsi_pr.helper.executors.dm import DeviceMapper
from scsi_pr.rig import backend_lio, multipath
from scsi_pr.rig.backend_helper import HelperLioBackend
from scsi_pr.rig.backends import BackendUnavailable
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.helper_processes import SharedHelpers

#: the shared helper (``SharedHelpers``) of the map's backend: its own, since libmpathpersist
#: reads multipath.conf once, when the helper starts
MULTIPATH_HELPER = "sg-multipath"


class _HeldOpen:
    """The disks and maps handed to the helper, opened once for the whole run. Why not per
    backend: closing a block device opened for writing makes udev probe it (an inotify
    close-write watch), and the probe's commands take the unit attentions of the next test on
    that I_T nexus (measured: a REGISTRATIONS PREEMPTED the test expected was gone)."""

    fds: ClassVar[dict[str, int]] = {}

    @classmethod
    def fd(cls, path: str) -> int:
        if path not in cls.fds:
            if not cls.fds:
                atexit.register(cls.close_all)
            cls.fds[path] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return cls.fds[path]

    @classmethod
    def close_all(cls) -> None:
        for fd in cls.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        cls.fds.clear()


class HelperLioIoctlBackend(HelperLioBackend):
    """PR through ``scsi-pr-helper --backend ioctl`` (the block layer's PR ioctls) on the LIO
    rig's /dev/sdX disks; everything else as ``helper-lio``."""

    name = "helper-lio-ioctl"
    executor = "ioctl"
    path_limits = limits.of_backend("ioctl", platform.release())

    def __init__(self, initiators: int = 2) -> None:
        super().__init__(initiators)
        assert self._lio is not None
        try:
            for it, port in zip(self.helper_initiators, self._lio.lio_initiators, strict=True):
                it.pr_fd = _HeldOpen.fd(port.port.sd)
        except OSError as e:
            self.__exit__(None, None, None)
            raise BackendUnavailable(f"helper-lio-ioctl: cannot open the LIO disks: {e}") from e


class _SharedMap:
    """The process-wide multipath map over the LIO rig's first ports (built once, like the
    rig; removed at exit before the rig, whose LUNs it holds open)."""

    found: multipath.MultipathMap | None = None

    @classmethod
    def over(cls, paths: list[str]) -> multipath.MultipathMap:
        names = tuple(sorted(Path(p).name for p in paths))
        if cls.found is None or cls.found.paths != names:
            if cls.found is None:
                atexit.register(cls.down)  # after the rig's: atexit runs it first
            backend_lio.mark_multipath_used()  # the rig's LUN is not removed at exit
            cls.found = multipath.up(paths)
            # a helper started before read the configuration of a map that is gone: its
            # library then refused every PR OUT (measured: the multipath tests, which remove
            # their map, and then the conformance suite in one process)
            SharedHelpers.discard(MULTIPATH_HELPER)
        return cls.found

    @classmethod
    def down(cls) -> None:
        if cls.found is not None and cls.found.node in _HeldOpen.fds:
            os.close(_HeldOpen.fds.pop(cls.found.node))  # else the map is busy: no flush
        with contextlib.suppress(Exception):
            multipath.down(cls.found)
        cls.found = None


def release_multipath() -> None:
    """Remove the shared multipath map now (else at exit): multipathd's path checker sends TEST
    UNIT READY down its paths, which takes unit attentions meant for single-path tests."""
    _SharedMap.down()


class HelperLioMpathBackend(HelperLioBackend):
    """Initiator 0 is a multipath host: a dm-multipath map (multipathd, ``reservation_key
    file``) over the LIO rig's first two ports, its PR through ``scsi-pr-helper --backend sg``
    on the map's fd (the multipath executor: libmpathpersist); the others are single-path
    initiators as in ``helper-lio``. Initiator 0 names one path's I_T nexus (TransportID,
    RELATIVE TARGET PORT IDENTIFIER); its non-PR commands take that path.

    Which path: the **last** in the map's table order, never the first. libmpathpersist sends
    RESERVE, CLEAR and PREEMPT by the first path, so the I/O path is then a registrant that
    did not take the reservation: the case where a multipath host differs from a single-path
    one (the first path alone is what ``helper-lio`` tests). multipathd's table order is not
    ours to choose (discovery order; measured: it varies between VM runs), so choosing the I/O
    path after it makes every run take the same case."""

    name = "helper-lio-mpath"
    path_limits = limits.of_backend("multipath")
    #: paths of the multipath host
    PATHS = 2

    def __init__(self, initiators: int = 2) -> None:
        super().__init__(initiators + self.PATHS - 1)
        try:
            fd = _HeldOpen.fd(self.map.node)
            order = self._table_order(fd)
        except (OSError, BackendUnavailable) as e:
            self.__exit__(None, None, None)
            raise BackendUnavailable(f"helper-lio-mpath: {self.map.node}: {e}") from e
        host = self.helper_initiators[order[-1]]
        host.pr_fd = fd
        host.paths = tuple(
            (self.helper_initiators[i].transport_id, self.helper_initiators[i].relative_target_port)
            for i in order
        )
        self.initiators = [host, *self.helper_initiators[self.PATHS :]]

    def _table_order(self, fd: int) -> list[int]:
        """The host's paths (indices into ``path_ports``) in the map's table order: the order
        libmpathpersist and the helper's REGISTER AND MOVE try them in (the first takes a
        RESERVE)."""
        index = {port.sd: i for i, port in enumerate(self.path_ports)}
        dm = DeviceMapper.open()
        try:
            nodes = dm.path_nodes(fd)
        finally:
            dm.close()
        if sorted(nodes) != sorted(index):
            raise BackendUnavailable(f"map paths {nodes}, rig ports {sorted(index)}")
        return [index[node] for node in nodes]

    @property
    def helper_kind(self) -> str:
        return MULTIPATH_HELPER

    def prepare(self) -> None:
        """The map, before the helper starts (the helper's library must see its configuration),
        with no key left in multipathd from an earlier user."""
        assert self._lio is not None
        ports = self._lio.description.initiators
        try:
            self.map = _SharedMap.over([p.sd for p in ports[: self.PATHS]])
            multipath.forget_key(self.map)
        except RigError as e:
            raise BackendUnavailable(f"helper-lio-mpath: {e}") from e
        #: the LIO rig's ports that are the multipath host's paths, in table order
        self.path_ports = ports[: self.PATHS]
