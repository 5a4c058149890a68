"""Tests of the pure model (``sim/``): bytes in, bytes out, no backend plugin needed.

``pr_machine`` (the reusable state machine) is importable because pyproject puts ``tests/`` on
pytest's ``pythonpath``.
"""
