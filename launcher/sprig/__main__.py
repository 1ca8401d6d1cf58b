"""Briefcase runs ``python -m sprig`` (its stub binary does the same): start Sprig's window.

``desktop.__main__.main`` also runs the multiprocessing children that re-enter through
the stub binary, so they never open a second window.
"""

import sys

from desktop.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
