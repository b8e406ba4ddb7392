"""outputs: what an app returns, read from its output schema — file fields (one or many, of
which kind), value fields, and the files of one task's output."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipeline.core.outputs import OutputField, OutputSpec, suffix_for
from kling_pipeline.core.schemas import load_app

IMAGE_O1 = OutputSpec.from_schema(load_app("klingai/image-o1").output_schema)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=20)


def output_files(output: Any) -> list[tuple[str, str | None]]:
    return [(f.uri, f.content_type) for f in IMAGE_O1.files(output)]


def test_the_bundled_image_app_returns_an_image_and_maybe_a_list_of_them() -> None:
    assert IMAGE_O1.fields == (OutputField("image", "image"), OutputField("images", "image", many=True))


@pytest.mark.parametrize(("output", "files"), [
    ({"image": "https://f/1.png"}, [("https://f/1.png", None)]),
    ({"image": {"uri": "https://f/1.png", "content_type": "image/png", "size": 3}}, [("https://f/1.png", "image/png")]),
    ({"image": {"uri": "https://f/1.png", "content_type": 5}}, [("https://f/1.png", None)]),
    ({"images": ["https://f/1.png", {"uri": "https://f/2.jpg", "content_type": "image/jpeg"}]},
     [("https://f/1.png", None), ("https://f/2.jpg", "image/jpeg")]),
    ({"image": "https://f/0.png", "images": ["https://f/1.png"]},
     [("https://f/0.png", None), ("https://f/1.png", None)]),
    ({"image": "", "images": [None, 3, {"uri": ""}, {"url": "https://f/x"}, {"uri": 7}]}, []),
    ({"image": None, "images": "https://f/1.png"}, []),
    ({"output_meta": {"outputs": [{"type": "image", "count": 9}]}}, []),
    (None, []), ("https://f/1.png", []), (["https://f/1.png"], []),
])
def test_image_o1_output_files(output: Any, files: list[tuple[str, str | None]]) -> None:
    assert output_files(output) == files


def test_output_files_drops_duplicates_by_uri() -> None:
    output = {
        "image": "https://f/1.png",
        "images": [{"uri": "https://f/1.png", "content_type": "image/png"}, "https://f/2.png", "https://f/2.png",
                   {"uri": "https://f/2.png", "content_type": "image/png"}],
    }
    # one file is downloaded once, whatever content types its mentions carry
    assert output_files(output) == [("https://f/1.png", None), ("https://f/2.png", None)]


def test_output_files_keeps_the_first_content_type_seen() -> None:
    output = {"images": [{"uri": "https://f/1", "content_type": "image/webp"}, {"uri": "https://f/1"}]}
    assert output_files(output) == [("https://f/1", "image/webp")]


@given(json_values)
def test_output_files_never_raises(output: Any) -> None:
    files = output_files(output)
    uris = [uri for uri, _ in files]
    assert len(uris) == len(set(uris))
    assert all(uri for uri in uris)



VIDEO = {  # the shape of the platform's deployed output schemas (pydantic): format: file, no media type
    "properties": {
        "video": {"type": "string", "format": "file", "description": "The generated video file."},
        "thumbnails": {"type": "array", "items": {"type": "string", "format": "file"}},
        "caption": {"type": "string"},
        "scores": {"anyOf": [{"type": "object"}, {"type": "null"}]},
        "voice": {"$ref": "#/$defs/File"},
        "output_meta": {"anyOf": [{"$ref": "#/$defs/OutputMeta"}, {"type": "null"}]},
    },
    "$defs": {"File": {"type": "object", "properties": {"uri": {"type": "string"}}}, "OutputMeta": {}},
}


def test_fields_and_kinds_come_from_the_schema_and_the_field_names() -> None:
    spec = OutputSpec.from_schema(VIDEO)
    assert spec.fields == (OutputField("video", "video"), OutputField("thumbnails", "image", many=True),
                           OutputField("caption", None), OutputField("scores", None), OutputField("voice", "audio"))
    assert [f.name for f in spec.value_fields] == ["caption", "scores"]


def test_a_media_type_in_the_schema_wins_over_the_name() -> None:
    spec = OutputSpec.from_schema({"properties": {"result": {"type": "string", "contentMediaType": "audio/wav"},
                                                  "blob": {"type": "string", "format": "file"}}})
    assert spec.fields == (OutputField("result", "audio"), OutputField("blob", "file"))
    assert spec.fields[1].accept == ()  # any content type


def test_files_of_several_fields_in_schema_order_and_values_beside() -> None:
    spec = OutputSpec.from_schema(VIDEO)
    out = {"caption": "a cat", "thumbnails": ["https://f/t0.jpg", "https://f/t1.jpg"], "video": "https://f/v.mp4",
           "voice": {"uri": "https://f/a", "content_type": "audio/wav"}, "scores": None}
    assert [(f.field.name, f.index, f.uri, f.content_type) for f in spec.files(out)] == [
        ("video", 0, "https://f/v.mp4", None), ("thumbnails", 0, "https://f/t0.jpg", None),
        ("thumbnails", 1, "https://f/t1.jpg", None), ("voice", 0, "https://f/a", "audio/wav")]
    assert spec.values(out) == {"caption": "a cat"}


@pytest.mark.parametrize(("kind", "ctype", "uri", "suffix"), [
    ("image", "image/jpeg", "https://f/x", ".jpg"),
    ("image", None, "https://f/x.webp?sig=1", ".webp"),
    ("image", None, "https://f/x", ".png"),
    ("video", "video/mp4; codecs=avc1", "https://f/x", ".mp4"),
    ("video", "application/octet-stream", "https://f/x.mov", ".bin"),
    ("audio", None, "https://f/x", ".wav"),
    ("file", "application/json", "https://f/x", ".json"),
    ("file", None, "https://f/x.tar.gz", ".gz"),
])
def test_suffix_from_the_type_else_the_uri_else_the_kind(kind: Any, ctype: str | None, uri: str, suffix: str) -> None:
    assert suffix_for(kind, ctype, uri) == suffix


@given(json_values)
def test_a_schema_of_any_shape_never_raises(schema: Any) -> None:
    spec = OutputSpec.from_schema(schema if isinstance(schema, dict) else {"properties": schema})
    spec.files({"x": schema})
