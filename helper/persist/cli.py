"""``scsi-pr persist [sg_persist options] [--socket PATH] DEVICE``: one run from argv to exit
status. ``execute`` does everything but writing (tests call it with their own transport);
``main`` writes the text the way sg_persist's buffering would."""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from scsi_pr.helper.persist.command import Transport
from scsi_pr.helper.persist.exit_codes import Exit, convert_errno, exit_text
from scsi_pr.helper.persist.options import Options, parse_options
from scsi_pr.helper.persist.outcome import Done, Outcome
from scsi_pr.helper.persist.prin import prin_work
from scsi_pr.helper.persist.prout import prout_work
from scsi_pr.helper.persist.transport import TransportFactory, helper_transport, socket_path
from scsi_pr.helper.persist.usage import ME


def execute(
    argv: Sequence[str],
    transport_factory: TransportFactory = helper_transport,
    env: dict[str, str] | None = None,
    read_stdin: Callable[[], list[str]] | None = None,
) -> Outcome:
    """Everything but writing the text: parse, open DEVICE, run the command, decode."""
    out = Outcome()
    environ = dict(os.environ) if env is None else env
    stdin_reader = read_stdin or _stdin_lines
    try:
        op = parse_options(argv, out, environ, stdin_reader)
        op.socket = socket_path(op, environ)  # the factory sees the environment given here
        out.code = _run(op, out, transport_factory)
    except Done as done:
        out.code = done.code
    return out


def fgets_lines(text: str) -> list[str]:
    """``text`` in lines as C's ``fgets`` reads them: ended by ``\\n`` only (``splitlines``
    would also end one at ``\\r``, a form feed or a file separator, which sg_persist keeps)."""
    return io.StringIO(text).readlines()  # StringIO's own newline is "\n": no translation


def _stdin_lines() -> list[str]:
    """``-X -``'s lines, read as bytes: sg_persist takes any bytes, and a strict locale must not
    turn one that is not UTF-8 into a traceback (the TransportID parser refuses it instead)."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text-only stand-in (already decoded)
        return sys.stdin.readlines()
    return fgets_lines(raw.read().decode("utf-8", "surrogateescape"))


def _run(op: Options, out: Outcome, transport_factory: TransportFactory) -> int:
    assert op.device is not None
    # No INQUIRY even without -n: the helper forwards PERSISTENT RESERVE IN/OUT only.
    flags = (os.O_RDONLY if op.readonly else os.O_RDWR) | os.O_NONBLOCK
    if op.verbose > 1:
        out.err(f"open {op.device} with flags=0x{flags:x}\n")
    try:
        fd = os.open(op.device, flags)
    except OSError as e:
        if op.verbose > 1:
            out.err(f"scsi_pt_open_flags: open({op.device}, 0x{flags:x}) failed: {e.strerror}\n")
        out.err(
            f"{ME}: error opening file {op.device} (r{'o' if op.readonly else 'w'}): {e.strerror}\n"
        )
        return convert_errno(e.errno or errno.EIO)
    transport: Transport | None = None
    try:
        transport = transport_factory(op, fd)
        code = prin_work(transport, op, out) if op.pr_in else prout_work(transport, op, out)
    finally:
        if transport is not None:
            transport.close()
        os.close(fd)
    if code and op.verbose == 0:
        text = exit_text(code, False)
        out.err(f"{ME} failed: {text}\n" if text is not None else f"Some error occurred [{code}]\n")
    return code if code >= 0 else Exit.OTHER


def main(
    argv: list[str] | None = None,
    transport_factory: TransportFactory = helper_transport,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """``scsi-pr persist [sg_persist options] [--socket PATH] DEVICE``."""
    outcome = execute(sys.argv[1:] if argv is None else argv, transport_factory)
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    if out_stream.isatty():  # line-buffered stdout: the two streams interleave as produced
        for is_err, text in outcome.events:
            stream = err_stream if is_err else out_stream
            stream.write(text)
            stream.flush()
        return outcome.code
    # stdout to a pipe or file is block-buffered in sg_persist: it comes out after stderr
    err_stream.write("".join(outcome.stderr))
    err_stream.flush()
    out_stream.write("".join(outcome.stdout))
    out_stream.flush()
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
