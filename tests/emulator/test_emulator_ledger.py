"""The billing ledger: price x n on completion only, submissions per identical input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import httpx

from kling_pipeline.emulator import EmulatorServer, Faults

from .helpers import submit, wait_terminal


def sha(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_completed_tasks_are_charged_price_times_n(api: httpx.Client, emu: EmulatorServer) -> None:
    one = wait_terminal(api, submit(api, "thé vert")["id"])
    three = wait_terminal(api, submit(api, "three", input={"n": 3, "aspect_ratio": "1:1"})["id"])

    ledger = emu.ledger()

    assert ledger["total_microcents"] == 4 * 2_800_000
    assert ledger["total_usd"] == "0.112"
    assert ledger["charges"] == [
        {
            "task_id": one["id"],
            "app": "klingai/image-o1",
            "input": {"prompt": "thé vert"},
            "input_sha256": sha({"prompt": "thé vert"}),
            "images": 1,
            "microcents": 2_800_000,
            "key_id": ledger["charges"][0]["key_id"],
            "charged_at": ledger["charges"][0]["charged_at"],
        },
        {
            "task_id": three["id"],
            "app": "klingai/image-o1",
            "input": {"prompt": "three", "n": 3, "aspect_ratio": "1:1"},
            "input_sha256": sha({"prompt": "three", "n": 3, "aspect_ratio": "1:1"}),
            "images": 3,
            "microcents": 8_400_000,
            "key_id": ledger["charges"][0]["key_id"],
            "charged_at": ledger["charges"][1]["charged_at"],
        },
    ]
    assert httpx.get(f"{emu.base_url}/_emulator/ledger").json()["data"] == ledger


def test_identical_inputs_are_counted_as_repeated_submissions(api: httpx.Client, emu: EmulatorServer) -> None:
    first = [submit(api, "again", input={"n": 2})["id"] for _ in range(3)]
    other = submit(api, "different")["id"]
    for task_id in [*first, other]:
        wait_terminal(api, task_id)

    submissions = {s["input_sha256"]: s for s in emu.ledger()["submissions"]}

    again = submissions[sha({"prompt": "again", "n": 2})]
    assert again == {"input_sha256": again["input_sha256"], "count": 3, "task_ids": first}
    assert submissions[sha({"prompt": "different"})]["count"] == 1
    assert emu.ledger()["total_microcents"] == (3 * 2 + 1) * 2_800_000


def test_failed_cancelled_and_rejected_tasks_are_not_billed(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    slow = make_emu(latency=30.0)
    slow_api = make_client(slow)
    cancelled = submit(slow_api, "cancel me")["id"]
    assert slow_api.post(f"/tasks/{cancelled}/cancel").json()["data"]["status"] == 12
    fast = make_emu(faults=Faults(reject_rate=1.0))
    fast_api = make_client(fast)
    rejected = submit(fast_api, "reject me")
    fast.set_faults(Faults(task_failure_rate=1.0))
    failed = wait_terminal(fast_api, submit(fast_api, "fail me", input={"n": 9})["id"])

    assert (rejected["status"], failed["status"]) == (13, 11)
    for emu, tasks in ((slow, 1), (fast, 2)):
        ledger = emu.ledger()
        assert ledger["charges"] == [] and ledger["total_microcents"] == 0 and ledger["total_usd"] == "0.00"
        assert sum(s["count"] for s in ledger["submissions"]) == tasks


def test_two_emulators_keep_separate_books(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    first, second = make_emu(), make_emu()

    wait_terminal(make_client(first), submit(make_client(first))["id"])

    assert len(first.ledger()["charges"]) == 1
    assert second.ledger()["charges"] == [] and second.tasks() == []
