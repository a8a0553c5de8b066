#!/usr/bin/env python3
"""Ironflow server entry point: ``python3 ironflow.py [serve|version|backup] [flags]``."""

import sys

if sys.version_info < (3, 11):
    sys.exit("ironflow needs Python 3.11 or newer")

from ironflow_pkg.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
