"""Lines a test asks to show in the run's summary, below pytest's own (``tests/vm/conftest.py``
prints them): e.g. how many lockstep steps the VM tier compared with real LIO."""

from __future__ import annotations

SUMMARY: list[str] = []
