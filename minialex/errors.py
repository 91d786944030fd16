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
