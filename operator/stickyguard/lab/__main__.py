"""`python -m stickyguard.lab testenv up|down|status`."""

import sys

from stickyguard.lab import testenv

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "testenv":
        sys.exit("usage: python -m stickyguard.lab testenv up|down|status [--dir DIR]")
    sys.exit(testenv.main(sys.argv[2:]))
