"""Learned models: registry of shipped models, input contracts, inference and Grad-CAM.

>>> from medimg.models import load
>>> model = load("cxr-pneumonia")   # offline; weights ship inside the package
"""

from .contract import Contract, ContractError
from .registry import Model, ModelError, available, load

__all__ = ["Contract", "ContractError", "Model", "ModelError", "available", "load"]
