"""Tests of the pure model (``sim/``): bytes in, bytes out, no backend plugin needed."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ holds pr_machine.py, the reusable state machine.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
