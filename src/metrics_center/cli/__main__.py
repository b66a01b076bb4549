"""``python -m metrics_center.cli``."""

import sys

from metrics_center.cli import main

sys.exit(main())
