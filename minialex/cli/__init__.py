"""The ``minialex`` command (also ``python -m minialex``): argument parsing and messages, nothing else.

::

    minialex train                         # the mini AlexNet on the embedded MNIST-5k digits
    minialex train --model mini --dataset fashion-mnist --epochs 20
    minialex train --resume runs/<run>/last.safetensors
    minialex train --model paper --dataset ~/data/imagenette2-320   # a folder of photos: train/<class>/*.jpg
    minialex evaluate runs/<run>/best.safetensors [--split val|test] [--ten-crop] [--dataset FOLDER]
    minialex predict runs/<run>/best.safetensors digit.png other.npy
    minialex predict runs/<run>/best.safetensors photo.jpg          # top-5 class names of a photo
    minialex convert alexnet-owt-7be5be79.pth -o alexnet-imagenet.safetensors   # torchvision's weights
    minialex summary --model paper

Errors never show a traceback (``--debug`` shows it): each ends as one line on stderr naming the problem,
and the exit status says what happened:

====  ==========================================================================================
0     success
1     the run failed: training diverged (NaN or infinite loss, gradient or weight), or memory ran out
2     a problem to fix in the command: a bad argument or option, data, checkpoint, backend
      (``MINIALEX_BACKEND``, ``MINIALEX_THREADS``), a file that cannot be written, an unusable input
130   stopped by Ctrl-C (SIGINT); a training run saved a checkpoint to resume from
143   stopped by SIGTERM (128 + the signal number, as a shell reports it); a checkpoint was saved
====  ==========================================================================================

Output. Progress lines of ``train`` go to stdout; if stdout goes away (``| head`` closed the pipe, a full disk)
the run goes on without them and writes its run directory as always. A command's result that cannot be written
is one line on stderr (status 2). Characters the terminal's encoding lacks are escaped (``\\xd7``), and
``--json`` output is valid JSON (a non-finite figure is ``null``).

The package is imported inside the error handling (:func:`main`): a bad ``MINIALEX_BACKEND`` or
``MINIALEX_THREADS`` raises when the backend or the thread pool is first imported, and must end as one
line too, ``--help`` included.

The package: :mod:`.options` builds the parser, :mod:`.commands` runs each command and writes its output,
and :func:`main` here turns every error into one line and an exit status.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import traceback
from collections.abc import Sequence

from minialex.cli.commands import EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_USAGE, drop_stdout, load_image
from minialex.cli.options import build_parser
from minialex.errors import MinialexError, TrainingDivergedError

__all__ = ["EXIT_CODES", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "load_image", "main"]


def _fail(message: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    with contextlib.suppress(OSError):  # stderr gone as well: the status still says it
        print(f"minialex: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``minialex`` console script; returns the exit status (see the module docstring).

    Everything but the standard library and :mod:`minialex.errors` is imported in here, inside the error
    handling, so that a bad ``MINIALEX_BACKEND`` or ``MINIALEX_THREADS`` ends as one line with status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    for stream in (sys.stdout, sys.stderr):  # a character the terminal cannot show is escaped, never fatal
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except TrainingDivergedError as exc:
        return _fail(str(exc), EXIT_FAILED, debug)
    except MinialexError as exc:
        return _fail(str(exc), EXIT_USAGE, debug)
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        return _fail(f"out of memory{detail}: try a smaller --batch-size or model", EXIT_FAILED, debug)
    except OSError as exc:  # e.g. --help into a closed pipe or onto a full disk: one line, never a traceback
        if exc.filename is None and exc.errno in (errno.EPIPE, errno.ENOSPC):
            drop_stdout()
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", EXIT_USAGE, debug)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("minialex: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
