"""``python -m vidstyle.weights fetch [--home DIR] [--downloads-dir DIR] [--pip CMD]``."""

import sys

from vidstyle.weights.cli import main

sys.exit(main())
