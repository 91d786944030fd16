"""minialex's exceptions: one small hierarchy, each subclassing the natural built-in.

Every message names the place (layer, file, option), the expected value and the actual one, so that a
learner can fix the cause without reading a traceback. The CLI prints these as one line.

=========================  =====================  ===============================================
exception                  also a                 raised for
=========================  =====================  ===============================================
``MinialexError``          ``Exception``          (the base; catch this to catch them all)
``BackendError``           ``RuntimeError``       a bad ``MINIALEX_BACKEND`` or an unusable GPU
``LayerInputError``        ``ValueError``         wrong shape, dtype or labels given to a layer
``ConfigError``            ``ValueError``         a bad option or hyper-parameter
``DataError``              ``ValueError``         a malformed, truncated or unsafe data file
``ChecksumError``          ``DataError``          a file whose hash is not the published one
``CheckpointError``        ``ValueError``         a corrupt checkpoint or one of another model
``TrainingDivergedError``  ``FloatingPointError``  a NaN or infinite loss or gradient
``WriteError``             ``OSError``            a file that cannot be written (full disk, ...)
=========================  =====================  ===============================================
"""

from __future__ import annotations


class MinialexError(Exception):
    """Base class of every error minialex raises on purpose."""


class BackendError(MinialexError, RuntimeError):
    """The array backend requested through ``MINIALEX_BACKEND`` cannot be used."""


class LayerInputError(MinialexError, ValueError):
    """A layer was given an input of the wrong shape, dtype or value range."""


class ConfigError(MinialexError, ValueError):
    """An option or hyper-parameter is out of its valid range."""


class DataError(MinialexError, ValueError):
    """A data file is malformed, truncated, of the wrong kind, or unsafe to extract."""


class ChecksumError(DataError):
    """A file's hash differs from the published one."""


class CheckpointError(MinialexError, ValueError):
    """A checkpoint is corrupt, truncated, or belongs to another model."""


class TrainingDivergedError(MinialexError, FloatingPointError):
    """The loss or a gradient became NaN or infinite."""


class WriteError(MinialexError, OSError):
    """A file could not be written; the previous version of it is unchanged (see :mod:`minialex.atomic`)."""


def shape_mismatches(expected: dict, given: dict) -> tuple[list[str], list[str], list[str]]:
    """Compare two name → array dicts: (missing names, unexpected names, "name: expected …, got …" lines)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = [
        f"{name}: expected {tuple(expected[name].shape)}, got {tuple(getattr(given[name], 'shape', ()))}"
        for name in expected
        if name in given and tuple(getattr(given[name], "shape", ())) != tuple(expected[name].shape)
    ]
    return missing, unexpected, misshaped


def mismatch_report(missing: list[str], unexpected: list[str], misshaped: list[str], noun: str = "tensors") -> str:
    """``"missing tensors: a, b | unexpected tensors: c | mis-shaped tensors: d: expected …"`` ("" if all fit).

    Each list shows its first :data:`REPORT_NAMES` items and how many more there are (the message stays short
    whatever a file declares).
    """

    def some(items: list[str], sep: str) -> str:
        shown = [item if len(item) <= 200 else item[:199] + "…" for item in items[:REPORT_NAMES]]
        more = f"{sep}and {len(items) - REPORT_NAMES:,} more" if len(items) > REPORT_NAMES else ""
        return sep.join(shown) + more

    parts = [f"missing {noun}: {some(missing, ', ')}"] if missing else []
    parts += [f"unexpected {noun}: {some(unexpected, ', ')}"] if unexpected else []
    parts += [f"mis-shaped {noun}: {some(misshaped, '; ')}"] if misshaped else []
    return " | ".join(parts)


REPORT_NAMES = 20
"""How many names :func:`mismatch_report` lists of each kind."""
