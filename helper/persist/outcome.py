"""What one ``scsi-pr persist`` run prints and returns, recorded instead of written.

Why: sg_persist's stdout is block-buffered when it is not a terminal, so its stdout and stderr
interleave differently on a pipe than on a tty. Keeping both the streams and the order in which
the text was produced lets ``cli.main`` write either way, and lets tests compare each stream
with sg_persist's without capturing file descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scsi_pr.helper.errors import HelperError


@dataclass
class Outcome:
    """What a run prints and returns; ``main`` writes it, tests read it."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    code: int = 0
    #: (is_stderr, text) in the order the program produced them
    events: list[tuple[bool, str]] = field(default_factory=list)

    def out(self, text: str) -> None:
        self.stdout.append(text)
        self.events.append((False, text))

    def err(self, text: str) -> None:
        self.stderr.append(text)
        self.events.append((True, text))


class Done(HelperError):
    """Stop with an exit code (after the messages already recorded)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
