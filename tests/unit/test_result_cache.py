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
    os.utime(cache.entry_path(key), (when, when))


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
    one = cache.entry_path("aa01").stat().st_size + 400
    cache.max_bytes = 2 * one + 10  # room for two entries and their files
    assert cache.get("aa01") is not None  # used just now: kept
    cache.evict()
    assert cache.keys() == {"aa01", "dd04"}
    kept = {p.name for p in cache.files_dir.rglob("*") if p.is_file()}
    assert kept == {hashlib.sha256(k.encode() * 100).hexdigest() for k in ("aa01", "dd04")}  # the others' files went


def test_entries_share_a_file_of_the_same_content(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    src = tmp_path / "same.png"
    src.write_bytes(b"same bytes")
    digest = hashlib.sha256(b"same bytes").hexdigest()
    for key in ("aa01", "bb02"):
        cache.put(key, "app", None, 1, [(src, digest, "image/png")], None)
    assert len([p for p in cache.files_dir.rglob("*") if p.is_file()]) == 1
    os.utime(cache.entry_path("aa01"), (1000.0, 1000.0))
    cache.max_bytes = cache.entry_path("bb02").stat().st_size + len(b"same bytes")
    cache.evict()  # the older entry goes, the file stays: the other entry names it
    assert cache.keys() == {"bb02"} and cache.get("bb02") is not None


def test_a_file_no_entry_names_goes_once_it_is_old(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path / "cache")
    _stored(cache, tmp_path, "aa01", 400, 1000.0)
    cache.entry_path("aa01").unlink()  # as after a crash between the link and the entry
    cache.evict()
    assert any(p.is_file() for p in cache.files_dir.rglob("*"))  # young: a put may be writing its entry
    monkeypatch.setattr("kling_pipeline.store.cache.ORPHAN_AGE", -1.0)  # as if ten minutes had passed
    cache.evict()
    assert not any(p.is_file() for p in cache.files_dir.rglob("*"))


def test_the_bound_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("KLING_PIPELINE_CACHE_MAX_GB", raising=False)
    assert default_max_bytes() == DEFAULT_MAX_BYTES == ResultCache(tmp_path).max_bytes
    monkeypatch.setenv("KLING_PIPELINE_CACHE_MAX_GB", "0.5")
    assert ResultCache(tmp_path).max_bytes == 1024**3 // 2
    for bad in ("lots", "-1", "0", "nan"):
        monkeypatch.setenv("KLING_PIPELINE_CACHE_MAX_GB", bad)
        with pytest.raises(UsageError, match="KLING_PIPELINE_CACHE_MAX_GB"):
            default_max_bytes()
