"""Stop requests: SIGINT (Ctrl-C) and SIGTERM end a run cleanly, at the end of the current step.

While a run trains, the handlers only note the signal; the loop looks at :attr:`StopRequests.signal`
between steps, finishes the step, saves a checkpoint of that exact point and returns. A second Ctrl-C
raises :class:`KeyboardInterrupt` at once (every file is written atomically, so none is torn). Handlers
can only be installed in the main thread; elsewhere :meth:`StopRequests.request` still works.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """A context manager that installs the handlers and puts the previous ones back on exit."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signal: int | None = None
        """The signal number of the first stop request, or None."""
        self.signals = tuple(signals)
        """The signals that request a stop (a run over MPI adds SIGUSR1, which ``mpiexec`` forwards)."""
        self.quiet = False
        """Write no note when a signal arrives (the ranks other than 0 of a distributed run)."""
        self._previous: dict[int, Any] = {}

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop after the current step (what the handler does; tests call it directly)."""
        self.signal = int(signum)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum
        if self.quiet:
            return
        # Written straight to file descriptor 2: print() is not safe inside a signal handler.
        note = f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint (Ctrl-C again aborts)\n"
        try:
            os.write(2, note.encode())
        except OSError:
            pass

    def __enter__(self) -> StopRequests:
        self.signal = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
