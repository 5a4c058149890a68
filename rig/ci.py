"""Are we in CI? One answer for the plugin, the VM runner and the tests.

With ``CI=true`` (or 1/yes) every tier must really run: a missing tool, kernel or backend is a
failure there, where on a developer's machine it is a skip with the reason.
"""

from __future__ import annotations

import os

TRUE_WORDS = ("1", "true", "yes")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in TRUE_WORDS
