"""`python -m vsa.submit`: same as `vsa submit`."""

import sys

from vsa.cli import main

if __name__ == "__main__":
    sys.exit(main(["submit", *sys.argv[1:]]))
