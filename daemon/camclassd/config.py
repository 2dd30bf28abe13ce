"""The configuration: one TOML file parsed into validated pydantic models.

Every field has a type, a default and a description; unknown keys are errors. The
descriptions also generate the commented default file (`camclassd default-config`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from camclassd.cameras import TYPES, CameraBase, CameraConfig
from camclassd.cameras.picamera2 import Picamera2Camera
from camclassd.constants import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_LABELS_FILE,
    DEFAULT_MODEL_DIR,
    DEFAULT_MODEL_FILE,
    Delegate,
)
from camclassd.schema import RELATIVE_PATHS, Section, cross_field_error, file_path, fraction

__all__ = [
    "CAMERA_MODELS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_MODEL_DIR",
    "CameraBase",
    "CameraConfig",
    "Config",
    "Section",
    "cross_field_error",
]


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


# One model per camera `type`, in the order the default config documents them.
CAMERA_MODELS: tuple[type[CameraBase], ...] = tuple(kind.model for kind in TYPES)


class ModelConfig(Section):
    path: Path = file_path(DEFAULT_MODEL_DIR / DEFAULT_MODEL_FILE, "The .tflite image classifier.")
    labels: Path = file_path(
        DEFAULT_MODEL_DIR / DEFAULT_LABELS_FILE,
        "Labels file, one label a line, line i = class i (a leading background class is detected).",
    )
    num_threads: int | Literal["auto"] = Field(
        default="auto",
        description="Interpreter threads per inference worker, or 'auto': the cores left "
        "after the sources' decoding (a video file, RTSP or USB camera takes a core of its "
        "own, a picamera2 lores stream almost none), shared among the workers, at most 4 "
        "(docs/performance.md).",
    )
    delegate: Delegate = Field(
        default="none", description="'edgetpu' loads libedgetpu.so.1 for a Coral Edge TPU model."
    )
    top_k: int = Field(default=3, ge=1, le=20, description="How many classes each result carries.")

    @field_validator("num_threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        # One clear error instead of one per member of the union.
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
            raise ValueError(f"must be a whole number from 1 to 16, or 'auto'; got {value!r}")
        return value


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
    min_score: float = fraction(0.0, "Classes scoring below this are left out of the top-k.")
    threshold_high: float = fraction(
        0.5, "A label becomes the stable label when its score reaches this."
    )
    threshold_low: float = fraction(
        0.3, "The stable label is cleared when its score falls below this."
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
        description="No frame classified or skipped by the scene gate for this long counts as "
        "a stall (a dead camera or a hung inference): the systemd watchdog pings stop, so "
        "systemd restarts the service. "
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
        description=f"CA certificate file; unset: the system CAs. {RELATIVE_PATHS}",
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
    retain_snapshots: bool = Field(
        default=True,
        description="Keep the last snapshot per camera on the broker (retained, one JPEG each), "
        "so that a dashboard or Home Assistant's image entity that starts later shows it at once.",
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
    discovery: Literal["device", "components"] = Field(
        default="device",
        description="'device': one device-based discovery config (Home Assistant >= "
        "2024.11); 'components': one config per entity, for older Home Assistant and other "
        "consumers of its discovery. Switching hands the entities over, keeping their ids.",
    )
    support_url: str = Field(
        default="",
        pattern=r"^(https?://\S+)?$",
        description="The support link shown in Home Assistant's discovery origin; empty: none.",
        examples=["https://example.com/camclassd"],
    )


class CollectConfig(Section):
    dir: Path = Field(
        default=Path("/var/lib/camclassd/dataset"),
        description="Where collected examples go: DIR/CAMERA/LABEL/ (or _unlabelled/), the "
        "model's view and, where the source has it, the full image in _full/. " + RELATIVE_PATHS,
    )
    max_files: int = Field(
        default=1000, ge=1, le=1_000_000, description="The dataset's file budget."
    )
    max_mib: float = Field(
        default=200.0, gt=0, le=1_000_000, description="The dataset's size budget in MiB."
    )
    auto: bool = Field(
        default=False,
        description="Save examples worth labelling by itself: frames where the model is "
        "unsure (top-1 below auto_below) or where the stable label changed; the newest "
        "unlabelled ones are kept when the budget is full.",
    )
    auto_below: float = fraction(
        0.5, "With auto: a frame whose top-1 score is below this is saved."
    )
    auto_every_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="With auto: at most one example per camera this often.",
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


class PrometheusConfig(Section):
    enabled: bool = Field(
        default=False,
        description="Serve the metrics for Prometheus over HTTP at http://HOST:PORT/metrics.",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to listen on; '0.0.0.0' (or '::') lets other machines scrape. "
        "The endpoint has no authentication.",
    )
    port: int = Field(default=9473, ge=1, le=65535, description="TCP port to listen on.")


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
    collect: CollectConfig = Field(
        default_factory=CollectConfig,
        description="Examples for training your own classes (the `collect` command, auto).",
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Metrics.")
    prometheus: PrometheusConfig = Field(
        default_factory=PrometheusConfig, description="The Prometheus endpoint (off by default)."
    )
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
