"""The I/O edge of ``scsi-pr persist``: PR commands through a qemu-pr-helper-compatible socket,
on the fd of the device this process opened, and which socket that is."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from scsi_pr.helper.options import DEFAULT_SOCKET
from scsi_pr.helper.persist.command import Response, Transport
from scsi_pr.helper.persist.options import Options
from scsi_pr.sim.constants import Opcode

if TYPE_CHECKING:
    from scsi_pr.helper.client import Client

SOCKET_ENV = "SCSI_PR_HELPER_SOCKET"
COMMAND_TIMEOUT = 60  # seconds; sg3_utils' DEF_PT_TIMEOUT for one command

#: (options, fd of the opened DEVICE) -> the transport the run sends its command through
TransportFactory = Callable[[Options, int], Transport]


class HelperTransport(Transport):
    """PR commands through a qemu-pr-helper-compatible socket, on the fd of an opened device.

    Connection problems (no helper, refused, dropped) surface as OSError naming the socket, so
    they are reported like sg_persist reports a failing pass-through."""

    def __init__(self, socket_path: str, fd: int) -> None:
        self.socket_path = socket_path
        self._fd = fd
        self._client: Client | None = None

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        # imported here: the core needs no sockets
        from scsi_pr.helper.client import Client, InvalidRequest

        allocation = (
            int.from_bytes(cdb[7:9], "big") if cdb[0] == Opcode.PERSISTENT_RESERVE_IN else None
        )
        try:
            if self._client is None:
                self._client = Client(self.socket_path, timeout=COMMAND_TIMEOUT)
            reply = self._client.execute(self._fd, cdb, data_out=data, allocation_length=allocation)
        except TimeoutError as e:
            raise OSError(
                errno.ETIMEDOUT,
                f"PR helper at {self.socket_path}: no answer within {COMMAND_TIMEOUT} s",
            ) from e
        except OSError as e:  # includes scsi_pr.helper.client.HelperConnectionError
            reason = e.strerror or str(e) or type(e).__name__
            raise OSError(e.errno or errno.EIO, f"PR helper at {self.socket_path}: {reason}") from e
        except InvalidRequest as e:  # refused locally, as QEMU's -EINVAL
            raise OSError(errno.EINVAL, f"PR helper request refused: {e}") from e
        return Response(reply.status, reply.sense, reply.data)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def socket_path(op: Options, env: Mapping[str, str] | None = None) -> str:
    """``--socket``, else $SCSI_PR_HELPER_SOCKET, else qemu-pr-helper's default socket."""
    environ = os.environ if env is None else env
    return op.socket or environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def helper_transport(op: Options, fd: int) -> Transport:
    """The default TransportFactory: the helper socket the options and environment name."""
    return HelperTransport(socket_path(op), fd)
