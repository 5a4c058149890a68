"""A test's locale: for code that must read its files as UTF-8 whatever the user's locale."""

from __future__ import annotations

import locale
from collections.abc import Iterator

import pytest


@pytest.fixture
def ascii_locale() -> Iterator[None]:
    """LC_CTYPE "C" for the test: open()'s default encoding becomes ASCII (unless Python runs
    in UTF-8 mode, where the default stays UTF-8)."""
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
