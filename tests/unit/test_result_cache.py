"""The shared result cache on its own: entries are stored whole, checked by sha256 when served,
and the cache stays within its size bound by dropping the least recently used entries."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kling_pipeline.core.errors import UsageError
from kling_pipeline.store.cache import DEFAULT_MAX_BYTES, ResultCache, default_max_bytes


def _stored(cache: ResultCache, tmp_path: Path, key: str, size: int, when: float) -> None:
    src = tmp_path / f"{key}.png"
    data = key.encode() * (size // len(key))
    src.write_bytes(data)
    cache.put(key, "klingai/image-o1", "task-" + key, 2_800_000,
              [(src, hashlib.sha256(data).hexdigest(), "image/png")], {"image": "x"})
    meta = cache.root / key[:2] / key / "entry.json"
    os.utime(meta, (when, when))


def test_an_entry_round_trips_and_a_damaged_one_is_dropped(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    _stored(cache, tmp_path, "aa11", 400, 1000.0)
    entry = cache.get("aa11")
    assert entry is not None and entry.billed_microcents == 2_800_000 and entry.task_id == "task-aa11"
    dest = tmp_path / "out" / "a.png"
    cache.serve(entry, entry.files[0], dest)
    assert dest.read_bytes() == (tmp_path / "aa11.png").read_bytes()
    entry.path_of(entry.files[0]).unlink()
    entry.path_of(entry.files[0]).write_bytes(b"changed")
    assert cache.get("aa11") is None and not {"aa11"} & cache.keys()


def test_eviction_drops_the_least_recently_used_until_within_the_bound(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    for i, key in enumerate(["aa01", "bb02", "cc03", "dd04"]):
        _stored(cache, tmp_path, key, 400, 1000.0 + i)
    one = sum(p.stat().st_size for p in (cache.root / "aa" / "aa01").iterdir())
    cache.max_bytes = 2 * one + 10  # room for two entries
    assert cache.get("aa01") is not None  # used just now: kept
    cache.evict()
    assert cache.keys() == {"aa01", "dd04"}


def test_the_bound_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("KLING_PIPELINE_CACHE_MAX_GB", raising=False)
    assert default_max_bytes() == DEFAULT_MAX_BYTES == ResultCache(tmp_path).max_bytes
    monkeypatch.setenv("KLING_PIPELINE_CACHE_MAX_GB", "0.5")
    assert ResultCache(tmp_path).max_bytes == 1024**3 // 2
    for bad in ("lots", "-1", "0", "nan"):
        monkeypatch.setenv("KLING_PIPELINE_CACHE_MAX_GB", bad)
        with pytest.raises(UsageError, match="KLING_PIPELINE_CACHE_MAX_GB"):
            default_max_bytes()
