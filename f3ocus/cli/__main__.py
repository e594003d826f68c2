"""`python -m f3ocus.cli ...`: the same as the `f3ocus` console command."""

import os
import sys

from f3ocus.cli import main

if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sys.exit(main())
