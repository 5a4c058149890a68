"""``python -m scsi_pr.helper``: the ``scsi-pr-helper`` daemon.

Messages, ``--version`` and ``--help`` name the program by ``argv[0]`` as QEMU's helper does;
under ``-m`` that would be this file's path, so it is named as the console script is.
"""

import sys

from scsi_pr.helper.executable import PROGRAM
from scsi_pr.helper.main import main

sys.argv[0] = PROGRAM
sys.exit(main())
