"""Running a sweep: what each job needs (``work``), the budget (``budget``), one job's
life (``runner``, ``outputs``), a whole run (``session``), and webhook deliveries
(``webhooks``).

May import: ``kling_pipeline.core``, ``.api`` and ``.store``. Never views or the CLI.
"""
