"""One module per inbound helpdesk kind; each defines `Options` (see `bridge.helpdesk.verifier`).

`option_models()` finds them all, so a new kind is one new file here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from bridge.helpdesk.verifier import IntegrationOptions


@cache
def option_models() -> tuple[type[IntegrationOptions], ...]:
    """Every kind's options model, ordered by kind name."""
    models: list[type[IntegrationOptions]] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        options = getattr(module, "Options", None)
        if not (isinstance(options, type) and issubclass(options, IntegrationOptions)):
            raise TypeError(f"{module.__name__} must define Options(IntegrationOptions)")
        models.append(options)
    return tuple(sorted(models, key=lambda model: model.kind_name()))


def kind_names() -> list[str]:
    return [model.kind_name() for model in option_models()]
