"""Where API calls go and with which key: the user's config file of named profiles
(``profiles``), API keys read from the environment or from files whose permissions are
checked (``keys``), and the one resolution of both for a command (``connection``).

Reads the environment and files only when asked (the mapping of environment variables
is passed in), never at import time. The key is a ``Secret`` from the moment it is read:
no message, repr or record holds it.

May import: ``kling_pipeline.core`` and ``.api`` (for ``Secret``). Never the store, the
run layer, views or the CLI.
"""
