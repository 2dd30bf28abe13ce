"""Ask the running daemon to reload: the MQTT `reload` command (waiting for its reply) or
`systemctl reload camclassd`."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from camclassd.errors import UnavailableError

SERVICE = "camclassd"


def by_systemctl(timeout: float) -> str:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise UnavailableError("systemctl not found: reload the daemon by hand (SIGHUP)")
    try:
        done = subprocess.run(
            [systemctl, "reload", SERVICE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UnavailableError(f"systemctl reload {SERVICE} took over {timeout:g} s") from None
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        raise UnavailableError(
            f"systemctl reload {SERVICE} failed ({detail}): see journalctl -u {SERVICE}"
        )
    return f"systemctl reload {SERVICE}: done"


def by_mqtt(config_path: Path, timeout: float) -> str:
    """Publish `{prefix}/{device}/cmd/reload` and wait for the reply carrying our id."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415 (only this path needs paho)
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    from camclassd.configfile import load_config  # noqa: PLC0415
    from camclassd.mqtt.client import read_password  # noqa: PLC0415
    from camclassd.mqtt.topics import Topics  # noqa: PLC0415

    config = load_config(config_path)
    mc = config.mqtt
    topics = Topics(mc.prefix, config.device.resolved_id)
    request = f"install-{uuid.uuid4().hex[:12]}"
    replied = threading.Event()
    reply: dict[str, Any] = {}

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            reply["error"] = f"the broker refused the connection ({reason})"
            replied.set()
            return
        client.subscribe(topics.reply("reload"), qos=1)

    def on_subscribe(client: mqtt.Client, _u: Any, _mid: Any, _codes: Any, _p: Any) -> None:
        client.publish(topics.command("reload"), json.dumps({"id": request}), qos=1)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(payload, dict) and payload.get("id") == request:
            reply.update(payload)
            replied.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"camclassd-{request}")
    if mc.username:
        client.username_pw_set(mc.username, read_password(mc))
    if mc.tls.enabled:
        tls = mc.tls
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls.insecure)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(mc.host, mc.port, keepalive=30)
    except OSError as error:
        raise UnavailableError(
            f"cannot reach the MQTT broker {mc.host}:{mc.port} ({error}): reload the daemon "
            "with `systemctl reload camclassd` instead"
        ) from None
    client.loop_start()
    try:
        if not replied.wait(timeout):
            raise UnavailableError(
                f"no reply to the reload command on {topics.reply('reload')} within {timeout:g} "
                "s: is the daemon running and connected to this broker?"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    if "error" in reply and not reply.get("ok"):
        raise UnavailableError(f"the daemon refused the reload: {reply['error']}")
    return f"the daemon reloaded (MQTT reply on {topics.reply('reload')})"
