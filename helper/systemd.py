"""The two service-manager protocols our daemons speak: socket activation (``LISTEN_PID`` and
``LISTEN_FDS``, sd_listen_fds(3)) and readiness notification (``NOTIFY_SOCKET``, sd_notify(3)).

Readiness matters because "the process runs" is not "it serves": a ``Type=notify`` unit is
started only once the daemon says ``READY=1``, so units ordered after ours (an initiator
logging in to ``scsi-pr target serve``, a VM whose QEMU connects to the helper) do not race
its start. The rig waits the same way (``scsi_pr.rig.processes.NotifySocket``): no probing
connection, which the daemon would count as a client.

Not the ``sdnotify`` package: its 0.3.2 (2017, the last) swallows every error with a bare
``except`` unless asked to raise, and then raises a ``TypeError`` where ``NOTIFY_SOCKET`` is
not set; the protocol is one datagram, and a daemon told to notify must say clearly when it
cannot.
"""

from __future__ import annotations

import contextlib
import os
import socket

from scsi_pr.helper.errors import HelperError

FIRST_SOCKET_ACTIVATION_FD = 3
NOTIFY_ENV = "NOTIFY_SOCKET"


def socket_activation() -> int:
    """Number of sockets systemd passed (LISTEN_PID must be us), as QEMU checks it."""
    try:
        if int(os.environ.get("LISTEN_PID", "")) != os.getpid():
            return 0
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return 0
    return max(count, 0)


class NotifyError(HelperError):
    """``NOTIFY_SOCKET`` is set, but names nothing we can tell our state to."""


def notify_address(value: str) -> str:
    """The AF_UNIX address ``NOTIFY_SOCKET`` names: an absolute path, or ``@name`` for the
    abstract namespace (sd_notify(3)). Anything else (a relative path, systemd's ``vsock:``
    for a VM's manager) is a NotifyError: we would otherwise be told to notify and never do."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    raise NotifyError(f"{NOTIFY_ENV}={value!r}: not an absolute path or an @abstract name")


class ServiceNotifier:
    """Tells the service manager that we are ready and when we stop; does nothing when no
    manager asked (no ``NOTIFY_SOCKET``).

    ``from_environment`` connects at once, before the helper drops its privileges (the
    manager's socket may be writable by root only) and removes the variable, as
    sd_notify(3)'s ``unset_environment`` does, so no child process speaks for us.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address is None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(address)
        except OSError as e:
            sock.close()
            raise NotifyError(f"{NOTIFY_ENV}: cannot reach {_shown(address)}: {e.strerror}") from e
        self._sock = sock

    @classmethod
    def from_environment(cls) -> ServiceNotifier:
        value = os.environ.pop(NOTIFY_ENV, None)
        return cls(None if value is None else notify_address(value))

    def ready(self, status: str, main_pid: int | None = None) -> None:
        """``READY=1`` with a status line for ``systemctl status``, and ``MAINPID=`` when the
        process serving is not us (``-d``: our daemon child). NotifyError if it cannot be
        sent: a manager that never hears it kills the service at its start timeout."""
        pid = "" if main_pid is None else f"\nMAINPID={main_pid}"
        self._send(f"READY=1\nSTATUS={status}{pid}")

    def stopping(self) -> None:
        """``STOPPING=1``: what follows is the orderly shutdown, not a hang. Best effort: a
        manager gone by now changes nothing about stopping."""
        with contextlib.suppress(NotifyError):
            self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if self._sock is None or self.address is None:
            return
        try:
            self._sock.send(message.encode())
        except OSError as e:
            raise NotifyError(f"{NOTIFY_ENV}: {message.splitlines()[0]} not sent to "
                              f"{_shown(self.address)}: {e.strerror}") from e  # fmt: skip

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _shown(address: str) -> str:
    """An address as ``NOTIFY_SOCKET`` writes it (``@name`` for the abstract namespace)."""
    return "@" + address[1:] if address.startswith("\0") else address


def listener_name(listener: socket.socket) -> str:
    """What a STATUS line calls the socket served: its path, ``@name`` for an abstract one
    (a ``ListenStream=@name`` unit; Python gives those as bytes), ``host:port`` for TCP."""
    name = listener.getsockname()
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return _shown(name) if name else "an unnamed socket"
