"""Two QEMU guests, each its own iSCSI initiator, on one LU of ``scsi-pr target serve``; one
fences the other through persistent reservations.

Two VMs that share a host's block device share that host's I_T nexus, so PR between them means
nothing. QEMU's own iscsi block driver (libiscsi) logs in with the initiator name of its
``-drive``, so two QEMU processes are two initiator ports, two I_T nexuses of the target, as two
cluster nodes on a SAN are. No root and no VM is needed: QEMU runs under TCG as a user process
and the guests' kernel is the host's (``scsi_pr.rig.guest``).

1. ``scsi-pr target serve`` on 127.0.0.1 with a fresh state dir (LUN 0);
2. two guests booted at once, each with ``-drive driver=iscsi,...,initiator-name=IQN`` behind a
   ``virtio-scsi-pci`` + ``scsi-block`` (or ``scsi-generic``), so their CDBs reach the target
   unchanged;
3. the guests play fence_scsi's sequence (``scenario``): A registers and reserves type 5, B
   registers, reads keys, reservation and full status, and fences A with PREEMPT AND ABORT;
   A then sees a unit attention, RESERVATION CONFLICT on its write and only B's key. Pauses
   order the two (``choreography``); the host looks at the model's state at two of them;
4. ``checks`` compares every result with the scenario's expectations, and the nexuses seen by
   READ FULL STATUS, the model and the target's logins with each other.

The parts: ``scenario`` (steps, expectations, who waits for what), ``choreography`` (releasing
pauses), ``checks`` (pure verdict), ``driver`` (target, QEMU, consoles), ``cli``.
``scsi-pr guests`` or ``python -m scsi_pr.rig.iscsi_guests``; exit status 0 only if every check
passed.
"""
