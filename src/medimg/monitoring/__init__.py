"""Monitoring of the models in use: the input features of every analysis (:mod:`.features`), the
training reference of each model (:mod:`.reference`, also the script that regenerates them) and the
drift between the two (:mod:`.drift`).  The server's quality dashboard
(:mod:`medimg.server.dashboard`) shows the result."""

from .drift import FeatureDrift, compare
from .features import PROTOCOL_MODELS, describe, finding_scores

__all__ = ["PROTOCOL_MODELS", "FeatureDrift", "compare", "describe", "finding_scores"]
