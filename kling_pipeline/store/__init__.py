"""The output directory on disk: the write-ahead manifest (``manifest``) and shard
manifests (``sharding``).

May import: ``kling_pipeline.core``. Never the API client, the run layer, views or the CLI.
"""
