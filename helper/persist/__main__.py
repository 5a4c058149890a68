"""``python -m scsi_pr.helper.persist``: the same as ``scsi-pr persist``."""

import sys

from scsi_pr.helper.persist.cli import main

sys.exit(main())
