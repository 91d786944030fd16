"""minialex: AlexNet from scratch on NumPy or CuPy, every layer with a hand-written backward pass.

The array backend is chosen once, at import, from ``MINIALEX_BACKEND`` (``numpy``, ``cupy`` or ``auto``);
see :mod:`minialex.backend`.
"""

from minialex import backend
from minialex.backend import seed

__version__ = "0.1.0"

__all__ = ["__version__", "backend", "seed"]
