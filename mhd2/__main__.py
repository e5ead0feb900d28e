"""``python -m mhd2 run MODULE:ATTR | serve [DIR] | demo [options]`` — see :mod:`mhd2.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
