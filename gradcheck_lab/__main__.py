"""``python -m gradcheck_lab run ...``"""

import sys

from gradcheck_lab.doors.entry import main

sys.exit(main())
