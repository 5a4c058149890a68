"""``scsi-pr persist``: sg_persist's command line, output and exit codes, through a PR helper.

Why: scripts written for ``sg_persist`` (fence_scsi has ``--sg_persist-path``) need raw SCSI
access on the host. Sending the same PERSISTENT RESERVE IN/OUT through a qemu-pr-helper socket
lets them run unprivileged against any backend the helper serves (real SG_IO, simulated LUs).

What is emulated is the sg_persist shipped in sg3_utils 1.46 (``version: 0.67 20190913``), the
one on this project's reference machines: its getopt_long parsing (abbreviations, clustering,
permutation, error texts), its syntax checks and their exit codes, its output for every PR IN
service action (also with ``--hex``), its sense/status reporting and its exit codes (sg3_utils
``SG_LIB_CAT_*``; OS errors are 50 + errno). Quirks are kept on purpose: a script that worked
with sg_persist must see the same bytes.

Differences, by necessity (docs/persist.md):

* No INQUIRY: the helper forwards only PR IN/OUT (qemu-pr-helper closes the connection on any
  other opcode), so without ``-n`` nothing is printed for it instead of the vendor/product and
  peripheral-type lines; sg_persist itself stops when INQUIRY fails, which would make every
  ``-n``-less call fail for a reason that is not the device's.
* ``--socket PATH`` (else ``$SCSI_PR_HELPER_SOCKET``, else qemu-pr-helper's default) names the
  helper; the device is opened here (O_RDWR, or O_RDONLY with ``-y``) and its fd is passed.
* The helper returns 96 bytes of sense without a length; the length sg_persist would have seen
  is taken from the ADDITIONAL SENSE LENGTH byte.

The modules follow sg3_utils' own seams. Pure (but for reading ``-X file=NAME``):
``options`` (with ``scsi_pr.helper.getopt``, ``numbers``, ``usage``), ``build`` (CDB and
parameter list), ``command`` (one command and its sense/status reporting, with ``sense``,
``hexdump``, ``exit_codes``), one printer per PR IN service action (``read_keys``,
``read_reservation``, ``report_capabilities``, ``read_full_status``), ``transport_id``
(TransportID text forms), ``prin``/``prout`` (the two work paths). The I/O edge:
``transport`` (the helper socket) and ``cli`` (open DEVICE, run, write the streams).
"""

from scsi_pr.helper.persist.cli import main

__all__ = ["main"]
