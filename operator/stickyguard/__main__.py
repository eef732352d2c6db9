"""`python -m stickyguard` is the `stickyguard` command."""

import sys

from stickyguard.cli.main import main

sys.exit(main())
