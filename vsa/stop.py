"""`python -m vsa.stop`: same as `vsa stop`."""

import sys

from vsa.cli import main

if __name__ == "__main__":
    sys.exit(main(["stop", *sys.argv[1:]]))
