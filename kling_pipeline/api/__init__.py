"""Talking to the inference.sh API: HTTP/1.1 (``http11``), the wire format (``wire``),
errors and what they mean for money (``apierrors``), the client (``client``), the
service's rate limits (``ratelimits``, ``pacing``), and reads made before a run
(``preflight``, ``pricecheck``).

May import: ``kling_pipeline.core``. Never the store, the run layer, views or the CLI.
"""
