"""kling-pipeline: declarative, budget-capped sweeps on the inference.sh API.

The public Python API::

    from kling_pipeline import load_recipe, plan, run_sweep
    p = plan(load_recipe("recipes/quickstart.yaml"))    # or load_recipe({...}) / load_recipe(yaml_text)
    print(len(p.jobs), p.total_cost)                     # jobs, cost in microcents
    result = run_sweep(p, emulator=True)                 # await run_sweep_async(p, ...) in Jupyter
    for job in result: print(job.job, job.status, job.files, job.cost_usd)

See docs/notebook.md.

Names are imported on first use, so ``import kling_pipeline`` stays cheap (it
loads no template engine, schema validator or HTTP client).
"""

import importlib as _importlib
import typing as _t

__version__ = "0.1.0"

if _t.TYPE_CHECKING:
    from .api.apierrors import ApiError
    from .config.profiles import ConfigError
    from .core.errors import Diagnostic, KlingError, Position, RecipeError, UsageError
    from .core.jobs import Job
    from .core.loading import load_recipe
    from .core.planning import Plan, plan, plan_file
    from .core.recipe import Recipe
    from .notebook.results import JobOutcome, Progress, RunResult
    from .notebook.sweep import collect, collect_async, history, run_sweep, run_sweep_async, status
    from .store.lock import LockError
    from .views.history import RunEntry
    from .views.status import Status

# public name -> module that defines it
_EXPORTS = {
    "ApiError": "api.apierrors",
    "ConfigError": "config.profiles",
    "Diagnostic": "core.errors",
    "Job": "core.jobs",
    "JobOutcome": "notebook.results",
    "KlingError": "core.errors",
    "LockError": "store.lock",
    "Plan": "core.planning",
    "Position": "core.errors",
    "Progress": "notebook.results",
    "Recipe": "core.recipe",
    "RecipeError": "core.errors",
    "RunEntry": "views.history",
    "RunResult": "notebook.results",
    "Status": "views.status",
    "UsageError": "core.errors",
    "collect": "notebook.sweep",
    "collect_async": "notebook.sweep",
    "history": "notebook.sweep",
    "load_recipe": "core.loading",
    "plan": "core.planning",
    "plan_file": "core.planning",
    "run_sweep": "notebook.sweep",
    "run_sweep_async": "notebook.sweep",
    "status": "notebook.sweep",
}

__all__ = [
    "ApiError",
    "ConfigError",
    "Diagnostic",
    "Job",
    "JobOutcome",
    "KlingError",
    "LockError",
    "Plan",
    "Position",
    "Progress",
    "Recipe",
    "RecipeError",
    "RunEntry",
    "RunResult",
    "Status",
    "UsageError",
    "__version__",
    "collect",
    "collect_async",
    "history",
    "load_recipe",
    "plan",
    "plan_file",
    "run_sweep",
    "run_sweep_async",
    "status",
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
