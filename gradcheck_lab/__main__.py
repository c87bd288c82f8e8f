"""``python -m gradcheck_lab run ...``"""

import sys

from gradcheck_lab.doors.cli import main

sys.exit(main())
