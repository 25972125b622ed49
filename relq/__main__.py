"""``python -m relq``: the command-line interface (see relq.cli)."""

import sys

from relq.cli import main

sys.exit(main())
