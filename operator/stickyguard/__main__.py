"""`python -m stickyguard` is the `stickyguard` command."""

import sys

from stickyguard.cli import main

sys.exit(main())
