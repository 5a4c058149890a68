"""Mutation testing of the model (``sim/``), the helper's wire protocol (``helper/proto/``) and
its status table (``helper/executors/status.py``) with mutmut 3: ``scripts/mutate`` (``python
-m mutation``) runs it and prints the score and every survivor; ``equivalent.toml`` lists the
mutants that cannot be killed, each with its reason; ``test_sample.py`` runs a seeded sample in
the host tier.

- ``stage``: the staging tree mutmut runs in (the package-dir mapping undone on disk).
- ``mutmut_run``: driving mutmut (generate, list, run, read verdicts, describe a mutant).
- ``equivalents``: the equivalents file and matching survivors against it.
- ``report``: scores per target and the survivor listing.
"""
