"""``python -m minialex``: the same as the ``minialex`` command (see :mod:`minialex.cli`)."""

from minialex.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
