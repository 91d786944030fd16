"""``minialex ...`` on each rank (the command line's own entry point), for test_train_parallel.py.

Usage: train_cli.py train --parallel data ...     (any arguments of ``minialex``)
"""

from __future__ import annotations

import sys

import cases

from minialex.cli import main

if __name__ == "__main__":
    cases.start_rank()
    sys.exit(main(sys.argv[1:]))
