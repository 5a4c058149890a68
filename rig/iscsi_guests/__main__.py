"""``python -m scsi_pr.rig.iscsi_guests``: see ``scsi_pr.rig.iscsi_guests.cli``."""

import sys

from scsi_pr.rig.iscsi_guests.cli import main

sys.exit(main())
