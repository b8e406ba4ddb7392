"""Small pure helpers: canonical input hashing, opaque ids, the clock and the dice."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

__all__ = ["Clock", "Dice", "canonical_json", "input_sha256", "key_id", "new_id"]


def canonical_json(value: Any) -> str:
    """The one spelling of an input that hashes are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def input_sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def key_id(api_key: str) -> str:
    """An opaque, stable id for an API key (the key itself is never stored)."""
    return "key_" + hashlib.sha256(b"kling-emulator-key\x00" + api_key.encode("utf-8")).hexdigest()[:12]


def new_id() -> str:
    """A random 24-character lowercase hex id (task and file ids are unguessable)."""
    return secrets.token_hex(12)


class Clock:
    """Monotonic time for scheduling, and wall-clock stamps that never go backwards."""

    __slots__ = ("_mono0", "_second", "_second_text", "_wall0")

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self._second = -1
        self._second_text = ""

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def unix(self) -> float:
        """Unix time now, advancing with the monotonic clock (so it never jumps back)."""
        return self._wall0 + time.monotonic() - self._mono0

    def stamp(self, mono: float) -> str:
        """ISO 8601 UTC with microseconds and ``Z`` for a monotonic instant."""
        micros = round((self._wall0 + mono - self._mono0) * 1_000_000)
        second, fraction = divmod(micros, 1_000_000)
        if second != self._second:  # formatting the date is the slow part: once a second
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{fraction:06d}Z"


class Dice:
    """Deterministic 'random' numbers: a hash of the seed and the decision's key parts.

    Deciding from (seed, input, attempt number, kind) instead of drawing from one
    shared RNG keeps outcomes independent of request arrival order.
    """

    __slots__ = ("_seed",)

    def __init__(self, seed: int) -> None:
        self._seed = str(seed)

    def unit(self, *parts: object) -> float:
        """A number in [0, 1) fixed by the parts."""
        text = "\x1f".join((self._seed, *map(str, parts)))
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def chance(self, rate: float, *parts: object) -> bool:
        return rate > 0 and self.unit(*parts) < rate
