"""`python -m repro`: the same as the `repro` console script."""

import sys

from repro.cli.main import main

sys.exit(main())
