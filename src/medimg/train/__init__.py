"""Training and evaluation of medimg's learned models (MONAI networks, losses, metrics).

``medimg train CONFIG`` -> :func:`medimg.train.loop.train`; ``medimg evaluate MODEL DATA`` ->
:func:`medimg.train.evaluate.evaluate`.  See docs/training.md.
"""

from .config import load_config

__all__ = ["load_config"]
