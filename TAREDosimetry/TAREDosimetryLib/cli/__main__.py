"""python -m TAREDosimetryLib.cli"""

import sys

from . import main

sys.exit(main())
