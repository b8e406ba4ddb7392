"""kling-pipeline: declarative, budget-capped sweeps on the inference.sh API.

The public Python API::

    from kling_pipeline import load_recipe, plan
    p = plan(load_recipe("recipes/quickstart.yaml"))
    print(len(p.jobs), p.total_cost)  # jobs, cost in microcents

Names are imported on first use, so ``import kling_pipeline`` stays cheap (it
loads no template engine, schema validator or HTTP client).
"""

import importlib as _importlib
import typing as _t

__version__ = "0.1.0"

if _t.TYPE_CHECKING:
    from .core.errors import Diagnostic, KlingError, Position, RecipeError, UsageError
    from .core.jobs import Job
    from .core.loading import load_recipe
    from .core.planning import Plan, plan, plan_file
    from .core.recipe import Recipe

# public name -> module that defines it
_EXPORTS = {
    "Diagnostic": "core.errors",
    "Job": "core.jobs",
    "KlingError": "core.errors",
    "Plan": "core.planning",
    "Position": "core.errors",
    "Recipe": "core.recipe",
    "RecipeError": "core.errors",
    "UsageError": "core.errors",
    "load_recipe": "core.loading",
    "plan": "core.planning",
    "plan_file": "core.planning",
}

__all__ = [
    "Diagnostic",
    "Job",
    "KlingError",
    "Plan",
    "Position",
    "Recipe",
    "RecipeError",
    "UsageError",
    "__version__",
    "load_recipe",
    "plan",
    "plan_file",
]


def __getattr__(name: str) -> _t.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kling_pipeline' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
