"""Which paused guest may go on: the pure bookkeeping behind the scenario's ``RELEASES``.

The driver reports what it sees (a guest paused, a guest finished, a guest's console ended);
``Choreography`` answers with the pauses to release now. A pause that waits for something a
finished or dead guest can no longer do is ``stuck``, so the driver stops at once instead of
waiting for a deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scsi_pr.rig.iscsi_guests.scenario import DONE, Event


@dataclass
class Choreography:
    """``rules``: (guest, pause) -> events it waits for; a pause without a rule goes on at once."""

    rules: Mapping[Event, tuple[Event, ...]]
    happened: set[Event] = field(default_factory=set)
    #: pauses reached and not yet released, in the order they were reached
    waiting: list[Event] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)

    def paused(self, guest: str, pause: str) -> list[Event]:
        """``guest`` waits at ``pause``; the pauses to release now (it may be one of them)."""
        self.waiting.append((guest, pause))
        return self._happen((guest, pause))

    def done(self, guest: str) -> list[Event]:
        """``guest`` ran all its steps."""
        return self._happen((guest, DONE))

    def end(self, guest: str) -> None:
        """``guest``'s console ended (QEMU exited): it will do nothing more."""
        self.ended.add(guest)

    def _happen(self, event: Event) -> list[Event]:
        self.happened.add(event)
        ready = [p for p in self.waiting if set(self.rules.get(p, ())) <= self.happened]
        self.waiting = [p for p in self.waiting if p not in ready]
        return ready

    def stuck(self) -> list[str]:
        """Why waiting pauses can never be released: each names an event of an ended guest."""
        return [
            f"{guest} waits at {pause!r} for {other} {what!r}, but {other} has ended"
            for guest, pause in self.waiting
            for other, what in self.rules.get((guest, pause), ())
            if other in self.ended and (other, what) not in self.happened
        ]
