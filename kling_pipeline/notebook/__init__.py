"""The Python API for notebooks and scripts: run, collect and look at a sweep from Python.

``run_sweep`` / ``run_sweep_async`` (and ``collect`` / ``collect_async``) take a plan or a
recipe (a path, YAML text or a mapping), run it like ``kling-pipeline run`` — the same
budget cap, manifest and resume — and return a ``RunResult`` of typed ``JobOutcome`` items;
``on_progress`` hears a ``Progress`` snapshot as jobs start and end. ``status`` says where
a sweep stands. Errors are the command line's: ``RecipeError``, ``UsageError``,
``ConfigError``, ``LockError``, the API's errors, all ``KlingError``.

A layer of its own beside the CLI (``cli | notebook`` in the layer contract): both are
ways in for a person, built on views, run, config, api, store and core, and the only two
that may start the bundled emulator. Neither imports the other.
"""
