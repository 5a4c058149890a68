"""``python -m scsi_pr``: the umbrella ``scsi-pr`` command."""

import sys

from scsi_pr.rig.cli import main

sys.exit(main())
