"""The configuration: one TOML file parsed into validated pydantic models.

Every field has a type, a default and a description; unknown keys are errors. The
descriptions also generate the commented default file (`camclassd default-config`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from camclassd.gate_config import GateConfig

DEFAULT_CONFIG_PATH = Path("/etc/camclassd/camclassd.toml")
DEFAULT_MODEL_DIR = Path("/opt/camclassd/models")


class Section(BaseModel):
    # inf/nan would slip past every `ge`/`le` bound and mean nothing in a config.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


def cross_field_error(field: str | tuple[str, ...], message: str) -> PydanticCustomError:
    """A model-level rule broken by one field: `ctx["field"]` lets the loader name the key.

    (pydantic locates a model validator's error at the model, not at the field that is wrong.)
    """
    path = (field,) if isinstance(field, str) else field
    return PydanticCustomError("cross_field", message, {"field": path})


class DeviceConfig(Section):
    id: str = Field(
        default="",
        description="Device id used in MQTT topics and Home Assistant unique ids; "
        "empty means the hostname.",
        pattern=r"^[A-Za-z0-9_-]*$",
        max_length=64,
    )
    name: str = Field(
        default="", description="Friendly name shown in Home Assistant; empty means the id."
    )

    @property
    def resolved_id(self) -> str:
        return self.id or _sanitise_id(socket.gethostname())


def _sanitise_id(raw: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in raw)
    return cleaned.strip("-")[:64] or "camclassd"


Crop = Literal["center", "roi", "squash", "letterbox"]
Interpolation = Literal["nearest", "linear", "area", "cubic"]


class CameraBase(Section):
    enabled: bool = Field(
        default=True, description="Set false to keep a camera in the file but not run it."
    )
    crop: Crop = Field(
        default="center",
        description="How the frame is fitted to the square model input: 'center' (centre "
        "square, the crop the model saw in training), 'roi' (the region in `roi`), 'squash' "
        "(whole frame, aspect ratio not kept) or 'letterbox' (whole frame, padded).",
    )
    roi: tuple[float, float, float, float] | None = Field(
        default=None,
        description="Region of interest as normalised [x1, y1, x2, y2] in 0..1 of the frame; "
        "used when crop = 'roi'.",
        examples=[(0.25, 0.2, 0.75, 0.9)],
    )
    interpolation: Interpolation = Field(
        default="linear",
        description="Resize interpolation. 'linear' costs ~0.15 ms a frame; 'area' is "
        "smoother on big downscales but costs 1-5 ms.",
    )
    gate: GateConfig = Field(
        default_factory=GateConfig,
        description="The scene-change gate: classify when the view changes (docs/gate.md).",
    )

    @model_validator(mode="after")
    def _check_roi(self) -> CameraBase:
        if self.crop == "roi" and self.roi is None:
            raise cross_field_error("roi", "crop = 'roi' needs roi = [x1, y1, x2, y2]")
        if self.roi is not None:
            x1, y1, x2, y2 = self.roi
            if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
                raise cross_field_error(
                    "roi",
                    f"roi {list(self.roi)} must lie inside the frame: 0 <= x1 < x2 <= 1 and "
                    "0 <= y1 < y2 <= 1",
                )
        return self


class Picamera2Camera(CameraBase):
    """A Raspberry Pi camera (libcamera through picamera2); inference reads the lores stream."""

    type: Literal["picamera2"] = "picamera2"
    camera_num: int = Field(default=0, ge=0, description="Which Pi camera (0 for the first).")
    resolution: tuple[int, int] = Field(
        default=(1280, 720), description="Main stream size [width, height], kept for snapshots."
    )
    lores: tuple[int, int] = Field(
        default=(320, 240),
        description="Low-resolution YUV420 stream [width, height] that inference reads; the "
        "ISP may round the width up.",
    )
    fps: float = Field(default=10.0, gt=0, le=120, description="Frame rate asked of the sensor.")
    scaler_crop: tuple[int, int, int, int] | None = Field(
        default=None,
        description="Hardware crop [x, y, width, height] in sensor pixels (ScalerCrop).",
        examples=[(0, 0, 2304, 1296)],
    )
    capture_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="A capture that takes longer counts as a stall: the camera is reopened.",
    )


class OpenCVCamera(CameraBase):
    """A USB camera, a video file or an RTSP/HTTP stream, read through OpenCV."""

    type: Literal["opencv"] = "opencv"
    uri: str = Field(
        min_length=1,
        description="Device index ('0'), device path ('/dev/video0'), video file path, or "
        "rtsp:// / http(s):// URL.",
        examples=["/dev/video0"],
    )
    width: int | None = Field(
        default=None, gt=0, description="Capture width to ask a USB camera for.", examples=[640]
    )
    height: int | None = Field(
        default=None, gt=0, description="Capture height to ask a USB camera for.", examples=[480]
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        description="Frame rate: asked of a camera; for a file, the playback rate "
        "(unset: as fast as it can be classified).",
        examples=[10.0],
    )
    loop: bool = Field(default=True, description="For video files: start again at the end.")
    rtsp_transport: Literal["tcp", "udp"] = Field(
        default="tcp", description="RTSP transport; TCP survives lossy Wi-Fi better."
    )
    read_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="A read that takes longer counts as a stall: the stream is reopened.",
    )


class ImagesCamera(CameraBase):
    """Still images from a directory or glob, replayed as a camera (tests, demos)."""

    type: Literal["images"] = "images"
    path: str = Field(
        min_length=1,
        description="A directory of images or a glob such as 'photos/*.jpg'. Relative paths "
        "are relative to this file.",
        examples=["photos/*.jpg"],
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        description="Frames per second to emit; unset: as fast as classified.",
        examples=[2.0],
    )
    loop: bool = Field(default=True, description="Start again after the last image.")


class SyntheticCamera(CameraBase):
    """Generated frames, no hardware needed (benchmarks, smoke tests)."""

    type: Literal["synthetic"] = "synthetic"
    width: int = Field(default=640, gt=0, le=8192, description="Frame width in pixels.")
    height: int = Field(default=480, gt=0, le=8192, description="Frame height in pixels.")
    fps: float | None = Field(
        default=None,
        gt=0,
        description="Frames per second to emit; unset: as fast as possible.",
        examples=[10.0],
    )


CameraConfig = Annotated[
    Picamera2Camera | OpenCVCamera | ImagesCamera | SyntheticCamera,
    Field(discriminator="type"),
]

# One class per camera `type`, in the order the default config documents them.
CAMERA_MODELS: tuple[type[CameraBase], ...] = (
    Picamera2Camera,
    OpenCVCamera,
    ImagesCamera,
    SyntheticCamera,
)


class ModelConfig(Section):
    path: Path = Field(
        default=DEFAULT_MODEL_DIR / "efficientnet_lite0_uint8.tflite",
        # A Path default fails validation in JSON mode (used by the loader); it is valid anyway.
        validate_default=False,
        description="The .tflite image classifier. Relative paths are relative to this file.",
    )
    labels: Path = Field(
        default=DEFAULT_MODEL_DIR / "imagenet_labels.txt",
        # A Path default fails validation in JSON mode (used by the loader); it is valid anyway.
        validate_default=False,
        description="Labels file, one label a line, line i = class i (a leading background "
        "class is detected). Relative paths are relative to this file.",
    )
    num_threads: int | Literal["auto"] = Field(
        default="auto",
        description="Interpreter threads per inference worker, or 'auto': the cores left "
        "after the sources' decoding (a video file, RTSP or USB camera takes a core of its "
        "own, a picamera2 lores stream almost none), shared among the workers, at most 4 "
        "(docs/performance.md).",
    )
    delegate: Literal["none", "edgetpu"] = Field(
        default="none", description="'edgetpu' loads libedgetpu.so.1 for a Coral Edge TPU model."
    )

    @field_validator("num_threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        # One clear error instead of one per member of the union.
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
            raise ValueError(f"must be a whole number from 1 to 16, or 'auto'; got {value!r}")
        return value

    top_k: int = Field(default=3, ge=1, le=20, description="How many classes each result carries.")


class PipelineConfig(Section):
    queue_size: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Frames waiting for inference per camera; small keeps latency low.",
    )
    drop_policy: Literal["auto", "drop_oldest", "block"] = Field(
        default="auto",
        description="When the queue is full: 'drop_oldest' (live cameras: keep the newest), "
        "'block' (files: classify every frame), 'auto' picks by source type.",
    )
    workers: int = Field(
        default=1, ge=1, le=8, description="Inference workers, each with its own interpreter."
    )
    batch_size: int = Field(
        default=1, ge=1, le=32, description="Frames per invoke(); >1 helps several cameras."
    )
    max_batch_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="How long a worker waits to fill a batch."
    )
    min_score: float = Field(
        default=0.0, ge=0, le=1, description="Classes scoring below this are left out of the top-k."
    )
    threshold_high: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="A label becomes the stable label when its score reaches this.",
    )
    threshold_low: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="The stable label is cleared when its score falls below this.",
    )
    stable_frames: int = Field(
        default=3, ge=1, le=1000, description="A new top label must hold for this many frames."
    )
    publish: Literal["every", "on_change", "max_rate"] = Field(
        default="every",
        description="'every' frame, 'on_change' of the stable label, or at most `max_rate_hz`.",
    )
    max_rate_hz: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Results per second per camera with publish = 'max_rate'.",
    )
    stop_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long shutdown may take to drain frames in flight.",
    )
    stall_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="No frame classified for this long counts as a stall (a dead camera or "
        "a hung inference): the systemd watchdog pings stop, so systemd restarts the service. "
        "Keep it above the slowest camera's frame interval.",
    )

    @model_validator(mode="after")
    def _check_thresholds(self) -> PipelineConfig:
        if self.threshold_low > self.threshold_high:
            raise cross_field_error(
                "threshold_low",
                f"threshold_low ({self.threshold_low}) must be <= threshold_high "
                f"({self.threshold_high})",
            )
        return self


class TLSConfig(Section):
    enabled: bool = Field(default=False, description="Connect with TLS.")
    ca_file: Path | None = Field(
        default=None,
        description="CA certificate file; unset: the system CAs. Relative paths are relative "
        "to this file.",
        examples=["/etc/camclassd/ca.crt"],
    )
    cert_file: Path | None = Field(
        default=None,
        description="Client certificate for mutual TLS.",
        examples=["/etc/camclassd/client.crt"],
    )
    key_file: Path | None = Field(
        default=None,
        description="Client private key for mutual TLS.",
        examples=["/etc/camclassd/client.key"],
    )
    insecure: bool = Field(
        default=False,
        description="Skip hostname verification. Only for testing; never in production.",
    )

    @model_validator(mode="after")
    def _check_pair(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise cross_field_error(
                "key_file" if self.key_file is None else "cert_file",
                "cert_file and key_file must be given together",
            )
        return self


class MQTTConfig(Section):
    enabled: bool = Field(default=True, description="Publish over MQTT.")
    host: str = Field(default="localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(
        default=1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS)."
    )
    protocol: Literal["3.1.1", "5"] = Field(default="5", description="MQTT protocol version.")
    client_id: str = Field(
        default="", description="Client id; empty means 'camclassd-{device id}'."
    )
    keepalive_s: int = Field(
        default=30, ge=5, le=3600, description="Keepalive interval in seconds."
    )
    prefix: str = Field(
        default="camclassd",
        min_length=1,
        pattern=r"^[^#+]+$",
        description="First level of every topic.",
    )
    username: str = Field(default="", description="User name; empty for an anonymous connection.")
    password_file: Path | None = Field(
        default=None,
        description="File holding the password. Unset: the systemd credential 'mqtt_password' "
        "($CREDENTIALS_DIRECTORY) if present. Never put the password in this file.",
        examples=["/etc/camclassd/mqtt_password"],
    )
    qos_results: Literal[0, 1, 2] = Field(default=1, description="QoS of classification results.")
    qos_metrics: Literal[0, 1, 2] = Field(default=0, description="QoS of metrics.")
    retain_results: bool = Field(default=False, description="Retain the last result per camera.")
    buffer_size: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Results kept while the broker is unreachable (the newest are kept).",
    )
    reconnect_min_s: float = Field(default=1.0, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(
        default=4.0,
        gt=0,
        description="Longest reconnect delay: a returning broker is found within this (each "
        "delay doubles up to it, with random jitter so that many devices do not reconnect in "
        "lockstep).",
    )
    snapshot_interval_s: float = Field(
        default=0.0,
        ge=0,
        description="Publish a JPEG with the top-3 drawn on it at most this often per camera; "
        "0 turns snapshots off.",
    )
    max_command_bytes: int = Field(
        default=4096,
        ge=64,
        le=1_048_576,
        description="Commands larger than this get an error reply.",
    )
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS settings.")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        # `protocol = 5` is what people write; the allowed values are strings.
        if isinstance(value, int) and not isinstance(value, bool) and value == 5:
            return "5"
        return value

    @field_validator("qos_results", "qos_metrics", mode="before")
    @classmethod
    def _qos_not_bool(cls, value: Any) -> Any:
        # false == 0 == 0.0 in Python: a Literal[0, 1, 2] alone would take false and 0.0.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"QoS must be the integer 0, 1 or 2, not {value!r}")
        return value

    @model_validator(mode="after")
    def _check_backoff(self) -> MQTTConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise cross_field_error(
                "reconnect_min_s",
                f"reconnect_min_s ({self.reconnect_min_s}) must be <= reconnect_max_s "
                f"({self.reconnect_max_s})",
            )
        return self


class HomeAssistantConfig(Section):
    enabled: bool = Field(
        default=True, description="Publish Home Assistant MQTT discovery configs."
    )
    discovery_prefix: str = Field(
        default="homeassistant", min_length=1, description="Home Assistant's discovery prefix."
    )
    status_topic: str = Field(
        default="homeassistant/status",
        min_length=1,
        description="Home Assistant's birth topic; 'online' there re-sends discovery.",
    )


class MetricsConfig(Section):
    interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="How often metrics are published."
    )
    window: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="Latency samples per stage the percentiles are taken over.",
    )


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )
    target: Literal["auto", "journald", "stderr"] = Field(
        default="auto", description="'auto': journald when started by systemd, else stderr."
    )


def _default_cameras() -> dict[str, CameraConfig]:
    return {"main": Picamera2Camera()}


class Config(Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig, description="This device.")
    cameras: dict[str, CameraConfig] = Field(
        default_factory=_default_cameras,
        description="One table per camera, [cameras.NAME]; NAME appears in topics.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="The classifier.")
    pipeline: PipelineConfig = Field(
        default_factory=PipelineConfig, description="Queues, batching, results."
    )
    mqtt: MQTTConfig = Field(default_factory=MQTTConfig, description="The MQTT broker.")
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant discovery."
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Metrics.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")

    @model_validator(mode="after")
    def _check_cameras(self) -> Config:
        for name in self.cameras:
            if not name or any(not (c.isascii() and (c.isalnum() or c in "-_")) for c in name):
                raise cross_field_error(
                    ("cameras", name),
                    f"camera name {name!r} may only hold letters, digits, '-' and '_' "
                    "(it becomes an MQTT topic level)",
                )
        if not any(camera.enabled for camera in self.cameras.values()):
            raise cross_field_error("cameras", "at least one camera must be configured and enabled")
        return self
