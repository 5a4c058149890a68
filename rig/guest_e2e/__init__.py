"""End-to-end check with the real client: a QEMU guest's sg_persist, through a PR helper, on LIO.

Runs inside the LIO VM (root, LIO kernel, ``qemu-system-x86_64``). For each helper under test:

1. ``rig.lio.up``: a fresh ramdisk LU seen by two initiators, A and B (fresh, so PRgeneration
   starts at 0 and every run starts from the same state);
2. start the helper on a socket (``qemu-pr-helper -k SOCK``, the C reference, or ours,
   ``scsi-pr-helper -k SOCK``);
3. boot a nested TCG guest (``scsi_pr.rig.guest``) whose ``scsi-block`` disk is initiator A's
   ``/dev/sdX`` opened with ``file.pr-manager=`` pointing at that socket, so every PERSISTENT
   RESERVE IN/OUT the guest sends goes through the helper;
4. the guest runs ``sequence.SEQUENCE``; at each pause the host acts as initiator B with
   ``sg_persist`` on B's ``/dev/sgN`` (a conflicting reserve, then a look at what the preempt
   left) and, at the end, stops the helper so the guest sees what a missing helper looks like;
5. ``scsi_pr.rig.lio.down``.

Then every guest- and host-visible result is checked against ``checks.expected_problems`` (SPC
values for this sequence on this LU) and the helpers' results are compared with each other:
ours must equal the C helper's, byte for byte, for every step.

The parts: ``sequence`` (what the guest and the host run), ``observation`` (what a step showed,
decoded from sg_persist's output), ``checks`` (expected values, comparing helpers), ``driver``
(the host side: LU, helpers, QEMU, pauses), ``cli``.

``python -m scsi_pr.rig.guest_e2e [--helper NAME]... [--json FILE]``; exit status 0 only if
every check passed. A nested TCG guest boots in about a minute on two cores; budget several
minutes.
"""
