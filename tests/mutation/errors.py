"""The one error root of the mutation-testing driver: what makes a run unable to give a score
(mutmut missing or failing, a path the package does not have, a malformed equivalents file)."""

from __future__ import annotations


class MutationError(Exception):
    """A mutation run that cannot give a trustworthy answer."""
