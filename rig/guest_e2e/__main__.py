"""``python -m scsi_pr.rig.guest_e2e``: see ``scsi_pr.rig.guest_e2e.cli``."""

import sys

from scsi_pr.rig.guest_e2e.cli import main

sys.exit(main())
