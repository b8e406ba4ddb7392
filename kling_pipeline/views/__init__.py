"""How things read: the plan as text and JSON (``planview``), a run's live display
(``progress``), an output directory's status (``status``) and the gallery (``report``).

May import: ``kling_pipeline.core``, ``.api``, ``.store`` and ``.run``. Never the CLI.
"""
