"""One module per indicator; `load_all` (run when cidadao.redflags is imported) registers each of them."""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
