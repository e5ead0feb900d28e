"""``python -m mhd2 serve [DIR] [--host H] [--port P]`` — see :mod:`mhd2.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
