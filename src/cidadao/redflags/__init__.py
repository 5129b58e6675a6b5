"""Red flags of direct-award risk under Lei 14.133/2021: pure indicators over polars frames.

`REGISTRY` holds every indicator once `cidadao.redflags.indicators` is imported (the engine does it).
"""

from cidadao.redflags.base import REGISTRY, Dataset, Indicator, RuleResult, register

__all__ = ["REGISTRY", "Dataset", "Indicator", "RuleResult", "register"]
