"""``python -m kling_pipeline`` is the ``kling-pipeline`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
