import sys

from vsa.cli import main

sys.exit(main())
