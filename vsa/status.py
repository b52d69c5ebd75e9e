"""`python -m vsa.status`: same as `vsa status`."""

import sys

from vsa.cli import main

if __name__ == "__main__":
    sys.exit(main(["status", *sys.argv[1:]]))
