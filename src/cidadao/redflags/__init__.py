"""Red flags of direct-award risk under Lei 14.133/2021: pure indicators over polars frames.

Importing the package registers every indicator module under `indicators/` in REGISTRY.
"""

from cidadao.redflags.base import REGISTRY, Dataset, Indicator, RuleResult, register
from cidadao.redflags.indicators import load_all

load_all()

__all__ = ["REGISTRY", "Dataset", "Indicator", "RuleResult", "register"]
