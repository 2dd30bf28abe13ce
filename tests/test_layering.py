"""The import graph keeps its shape: the leaves do not import the config schema, and every
camera type comes from the one registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from camclassd import cameras
from camclassd.config import CAMERA_MODELS, Config
from camclassd.configfile import parse_config, summarise
from camclassd.default_config import render_default_config
from camclassd.errors import UsageError

# What `classify` and `watch` load, and what the sources are: none of it needs pydantic.
LEAVES = (
    "camclassd.cli",
    "camclassd.classify",
    "camclassd.engine",
    "camclassd.preprocess",
    "camclassd.secrets",
    "camclassd.mqtt.watch",
    "camclassd.sources.images",
    "camclassd.sources.opencv",
    "camclassd.sources.picamera2",
    "camclassd.sources.synthetic",
)


def test_the_leaves_import_no_pydantic() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {LEAVES!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'"
        " or m == 'camclassd.config'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_every_camera_type_comes_from_the_registry() -> None:
    assert tuple(kind.model for kind in cameras.TYPES) == CAMERA_MODELS
    text = render_default_config()
    for kind in cameras.TYPES:
        assert f"type = {kind.name!r}".replace("'", '"') in text, kind.name
        assert f"[cameras.{kind.example_name}]" in text, kind.name
    # A table of each type validates through the union and is summarised by its own type.
    config = parse_config(
        "[cameras.pi]\ntype = 'picamera2'\n"
        "[cameras.usb]\ntype = 'opencv'\nuri = 'rtsp://user:pw@cam/s'\n"
        "[cameras.photos]\ntype = 'images'\npath = 'photos'\n"
        "[cameras.test]\ntype = 'synthetic'\n"
    )
    assert {type(camera) for camera in config.cameras.values()} == set(CAMERA_MODELS)
    shown = summarise(config)
    assert "lores 320x240" in shown and "640x480" in shown and "photos" in shown
    assert "pw" not in shown  # the opencv summary masks a URL's password
    assert isinstance(config, Config)


@pytest.mark.parametrize(
    ("text", "kind", "field", "value"),
    [
        ("synthetic", "synthetic", "width", 640),
        ("synthetic:320x240", "synthetic", "height", 240),
        ("picamera2:1", "picamera2", "camera_num", 1),
        ("rtsp://cam.local/s", "opencv", "uri", "rtsp://cam.local/s"),
        ("/dev/video0", "opencv", "uri", "/dev/video0"),
        ("opencv:0", "opencv", "uri", "0"),
    ],
)
def test_bench_source_syntax_comes_from_each_type(
    text: str, kind: str, field: str, value: object
) -> None:
    camera = cameras.from_cli(text)
    assert camera.type == kind
    assert getattr(camera, field) == value


def test_bench_source_files_and_bad_arguments() -> None:
    assert cameras.from_cli("clip.mp4").type == "opencv"
    assert cameras.from_cli("samples/*.jpg").type == "images"
    with pytest.raises(UsageError, match="synthetic:WxH"):
        cameras.from_cli("synthetic:big")
    with pytest.raises(UsageError, match="width"):
        cameras.from_cli("synthetic:0x10")
