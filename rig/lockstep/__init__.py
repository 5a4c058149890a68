"""The lockstep differential: the model and a real device, the same bytes, step by step.

A hypothesis state machine (``machine``) sends each generated command to both sides through
the same initiator index, then compares the answers (``compare``): status, sense key, ASC,
ASCQ and sense-key-specific bytes, and data-in (PRGENERATION counted from the run's start).
The model runs with the device's profile (``lio-6.1`` for LIO on 6.1), so every answer LIO
gives that the profile does not predict is a difference. A difference is minimised by
dropping steps while it persists, and printed as a replay script (``steps``): one decoded line
per step with both answers, which ``scsi-pr lockstep --replay FILE`` runs again.

``run`` opens the two sides (``scsi_pr.rig.backends``) and drives the machine for a budget of
steps; ``cli`` is ``scsi-pr lockstep``.
"""
