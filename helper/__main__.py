"""``python -m scsi_pr.helper``: the ``scsi-pr-helper`` daemon."""

import sys

from scsi_pr.helper.main import main

sys.exit(main())
