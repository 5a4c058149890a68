"""What sg_persist says about itself: its name, its version and its two usage texts (``-h``,
``-hh``). Byte for byte sg_persist 0.67's, typos included: callers such as fence_scsi run
``-V`` to check the tool, and people compare the help with sg_persist(8)."""

from __future__ import annotations

ME = "sg_persist"
VERSION = "0.67 20190913"  # the sg_persist whose behaviour is reproduced, byte for byte

USAGE_MAIN = """\
Usage: sg_persist [OPTIONS] [DEVICE]
  where the main OPTIONS are:
    --clear|-C                 PR Out: Clear
    --help|-h                  print usage message, twice for more
    --in|-i                    request PR In command (default)
    --out|-o                   request PR Out command
    --param-rk=RK|-K RK        PR Out parameter reservation key
                               (RK is in hex)
    --param-sark=SARK|-S SARK    PR Out parameter service action
                                 reservation key (SARK is in hex)
    --preempt|-P               PR Out: Preempt
    --preempt-abort|-A         PR Out: Preempt and Abort
    --prout-type=TYPE|-T TYPE    PR Out type field (see '-hh')
    --read-full-status|-s      PR In: Read Full Status
    --read-keys|-k             PR In: Read Keys (default)
    --read-reservation|-r      PR In: Read Reservation
    --read-status|-s           PR In: Read Full Status
    --register|-G              PR Out: Register
    --register-ignore|-I       PR Out: Register and Ignore
    --register-move|-M         PR Out: Register and Move
                               for '--register-move'
    --release|-L               PR Out: Release
    --replace-lost|-x          PR Out: Replace Lost Reservation
    --report-capabilities|-c   PR In: Report Capabilities
    --reserve|-R               PR Out: Reserve
    --unreg|-U                 optional with PR Out Register and Move

Performs a SCSI PERSISTENT RESERVE (IN or OUT) command. Invoking
'sg_persist DEVICE' will do a PR In Read Keys command. Use '-hh'
for more options and TYPE meanings.
"""

USAGE_OTHER = """\
Usage: sg_persist [OPTIONS] [DEVICE]
  where the other OPTIONS are:
    --alloc-length=LEN|-l LEN    allocation length hex value (used with
                                 PR In only) (default: 8192 (2000 in hex))
    --device=DEVICE|-d DEVICE    supply DEVICE as an option rather than
                                 an argument
    --hex|-H                   output response in hex (for PR In commands)
    --maxlen=LEN|-m LEN        allocation length in decimal, by default.
                               like --alloc-len= (def: 8192, 8k, 2000h)
    --no-inquiry|-n            skip INQUIRY (default: do INQUIRY)
    --param-alltgpt|-Y         PR Out parameter 'ALL_TG_PT'
    --param-aptpl|-Z           PR Out parameter 'APTPL'
    --readonly|-y              open DEVICE read-only (def: read-write)
    --relative-target-port=RTPI|-Q RTPI    relative target port identifier
    --transport-id=TIDS|-X TIDS    one or more TransportIDs can
                                   be given in several forms
    --verbose|-v               output additional debug information
    --version|-V               output version string

For the main options use '--help' or '-h' once.


PR Out TYPE field value meanings:
  0:    obsolete (was 'read shared' in SPC)
  1:    write exclusive
  2:    obsolete (was 'read exclusive')
  3:    exclusive access
  4:    obsolete (was 'shared access')
  5:    write exclusive, registrants only
  6:    exclusive access, registrants only
  7:    write exclusive, all registrants
  8:    exclusive access, all registrants
"""


def usage(help_level: int) -> str:
    """The text for ``-h`` given ``help_level`` times (sg_persist's usage(1) for errors)."""
    return USAGE_MAIN if help_level < 2 else USAGE_OTHER
