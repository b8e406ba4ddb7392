"""A completed task's output: its files (drawn on first download), texts and billing metadata."""

from __future__ import annotations

from functools import partial
from typing import Any

from .files import FileStore
from .images import ImageMaker
from .media import encode_mp4, encode_wav, video_size
from .outputs import DEFAULT_SIZE, OutputField, OutputPlan, input_value
from .tasks import Task

__all__ = ["OutputMaker"]

LARGE_VIDEO_PIXELS = 100_000
"""Past this many pixels a frame, a video is encoded in a worker thread."""
LARGE_AUDIO_SAMPLES = 2_000_000


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)


class OutputMaker:
    """Builds ``task.output`` from the app's output plan; every file is stored as a renderer,
    so a client that never downloads costs no drawing."""

    def __init__(self, files: FileStore, images: ImageMaker) -> None:
        self.files = files
        self.images = images

    def make(self, plan: OutputPlan, task: Task, quantity: int, stamp: str, *, short: bool = False) -> dict[str, Any]:
        """``short``: a list output holds one item fewer than it is billed for."""
        value = task.input
        prompt = str(input_value(value, plan.defaults, plan.seed_field) or "")
        seconds: float | None = None
        output: dict[str, Any] = {}
        named = 0
        for field in plan.fields:
            stem = task.id if named == 0 else f"{task.id}-{field.name}"
            if field.kind == "image":
                output[field.name] = self._image(field, task, plan, stem, 0, prompt, stamp)
            elif field.kind == "images":
                count = max(0, round(field.measure.read(value, plan.defaults))) if field.measure else 1
                count = max(0, count - 1) if short else count
                output[field.name] = [
                    self._image(field, task, plan, f"{task.id}-{i}", i, prompt, stamp) for i in range(count)
                ]
            elif field.kind in ("video", "audio"):
                length = field.measure.read(value, plan.defaults) if field.measure else 1.0
                seconds = length if seconds is None else seconds
                output[field.name] = self._timed(field, task, plan, stem, length, prompt, stamp)
            elif field.kind == "text":
                output[field.name] = plan.render(field.text, value)
                continue
            else:
                continue
            named += 1
        for field in plan.fields:  # metadata last: it reports what the files hold
            if field.kind == "meta":
                number = quantity if field.value == "quantity" or seconds is None else _number(seconds)
                output[field.name] = {"outputs": [{"type": field.meta_type, field.key: number, "extra": {}}]}
        return {f.name: output[f.name] for f in plan.fields if f.name in output}

    def _describe(self, field: OutputField, task: Task, filename: str, content_type: str, file_id: str,
                  extra: dict[str, Any]) -> Any:
        uri = f"{task.base_url}/files/{file_id}"
        if field.form == "uri":
            return uri
        return {"uri": uri, "content_type": content_type, "filename": filename, **extra}

    def _image(
        self, field: OutputField, task: Task, plan: OutputPlan, stem: str, index: int, prompt: str, stamp: str
    ) -> Any:
        nominal = field.pixels.size(task.input, plan.defaults) if field.pixels else DEFAULT_SIZE
        width, height = self.images.scaled(*nominal)
        seed = f"{task.input_sha}:{task.sample_index}"
        comment = f"input {task.input_sha} sample {task.sample_index}"
        if index:
            seed, comment = f"{seed}:{index}", f"{comment} image {index}"
        stored = self.files.add_output(
            task_id=task.id,
            filename=f"{stem}.png",
            content_type="image/png",
            render=partial(ImageMaker.render_bytes, width, height, seed, prompt, comment),
            large=ImageMaker.is_large(width, height),
            stamp=stamp,
        )
        return self._describe(field, task, stored.filename, "image/png", stored.id, {"width": width, "height": height})

    def _timed(
        self, field: OutputField, task: Task, plan: OutputPlan, stem: str, seconds: float, prompt: str, stamp: str
    ) -> Any:
        seed = f"{task.input_sha}:{task.sample_index}:{prompt}"
        if field.kind == "video":
            nominal = field.pixels.size(task.input, plan.defaults) if field.pixels else DEFAULT_SIZE
            width, height = video_size(*self.images.scaled(*nominal))
            filename, content_type = f"{stem}.mp4", "video/mp4"
            render = partial(encode_mp4, seconds, width, height, seed)
            large = width * height > LARGE_VIDEO_PIXELS
        else:
            filename, content_type = f"{stem}.wav", "audio/wav"
            render = partial(encode_wav, seconds, seed, field.sample_rate)
            large = seconds * field.sample_rate > LARGE_AUDIO_SAMPLES
        stored = self.files.add_output(
            task_id=task.id, filename=filename, content_type=content_type, render=render, large=large, stamp=stamp
        )
        return self._describe(field, task, stored.filename, content_type, stored.id, {})

