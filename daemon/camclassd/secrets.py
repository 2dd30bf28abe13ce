"""The one reader of secrets: the MQTT password (a file, or the systemd credential) and the
TLS context built from the certificate files.

`run`, `check-config` and `watch` all come here, so a file is judged the same way by each,
and the daemon builds its TLS context once, when the config is loaded, and hands it to the
MQTT session. No pydantic: `watch` calls this with plain paths.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from camclassd.constants import CREDENTIAL_NAME
from camclassd.errors import ConfigError

if TYPE_CHECKING:  # for the annotation only: `watch` must not pay for pydantic
    from camclassd.config import MQTTConfig


@dataclass(frozen=True)
class Problem:
    """One secret file that cannot be used: the key that names it, the file, what is wrong."""

    key: str
    path: Path | None
    reason: str


class SecretsError(ConfigError):
    """Secret files that cannot be used, one `Problem` each (exit 78)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.key}: {p.reason}" for p in problems))


@dataclass(frozen=True)
class MqttSecrets:
    """What the MQTT session needs that is not in the config: read once, at load."""

    password: str | None = None
    tls: ssl.SSLContext | None = None  # None: TLS is off


def read_password(
    password_file: Path | None, *, key: str = "mqtt.password_file", credential: bool = True
) -> str | None:
    """`password_file`, else (with `credential`) `$CREDENTIALS_DIRECTORY/mqtt_password`
    (systemd LoadCredential=), else None. Only the final newline is stripped. The password
    never passes through the TOML nor a log line."""
    if password_file is not None:
        path = password_file.expanduser()
    else:
        directory = os.environ.get("CREDENTIALS_DIRECTORY") if credential else None
        if not directory or not (Path(directory) / CREDENTIAL_NAME).exists():
            return None
        path, key = Path(directory) / CREDENTIAL_NAME, f"the systemd credential {CREDENTIAL_NAME}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reason = (
            f"cannot read {path}: {error.strerror or error}; the file must be readable by the "
            "service user"
        )
        raise SecretsError([Problem(key, path, reason)]) from None
    except UnicodeDecodeError:
        raise SecretsError([Problem(key, path, f"{path} is not UTF-8 text")]) from None
    password = text.rstrip("\r\n")  # editors add a final newline; keep any other whitespace
    if not password:
        raise SecretsError([Problem(key, path, f"{path} is empty")])
    return password


def tls_context(
    ca_file: Path | None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    *,
    option: Callable[[str], str] = "mqtt.tls.{}".format,
) -> ssl.SSLContext:
    """A client context that verifies the broker (against `ca_file`, else the system CAs),
    with the client certificate when given; SecretsError naming every file that is wrong
    (`option` spells a file's key: `ca_file` -> `mqtt.tls.ca_file`, or a command line's)."""
    problems: list[Problem] = []

    def readable(name: str, path: Path | None) -> bool:
        if path is None:
            return True
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            problems.append(Problem(option(name), path, f"cannot read {path}: {error.strerror}"))
            return False
        return True

    ca_ok = readable("ca_file", ca_file)
    pair_ok = readable("cert_file", cert_file)
    pair_ok = readable("key_file", key_file) and pair_ok
    try:
        context = ssl.create_default_context(cafile=ca_file if ca_ok else None)
    except (ssl.SSLError, ValueError, OSError) as error:
        problems.append(
            Problem(
                option("ca_file"),
                ca_file,
                f"{ca_file} holds no usable CA certificate (PEM): {error}",
            )
        )
        context = ssl.create_default_context()
    if pair_ok and cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, ValueError, OSError) as error:
            problems.append(
                Problem(
                    option("cert_file"),
                    cert_file,
                    f"the certificate {cert_file} and key {key_file} do not load together "
                    f"(PEM, unencrypted key of that certificate): {error}",
                )
            )
    if problems:
        raise SecretsError(problems)
    return context


def load_mqtt_secrets(mqtt: MQTTConfig) -> MqttSecrets:
    """The password and TLS context the [mqtt] section names; SecretsError listing every
    file that is wrong. Only what is used is read: nothing when MQTT is off, the TLS files
    only when TLS is on."""
    if not mqtt.enabled:
        return MqttSecrets()
    problems: list[Problem] = []
    password: str | None = None
    context: ssl.SSLContext | None = None
    try:
        password = read_password(mqtt.password_file)
    except SecretsError as error:
        problems.extend(error.problems)
    tls = mqtt.tls
    if tls.enabled:
        try:
            context = tls_context(tls.ca_file, tls.cert_file, tls.key_file)
        except SecretsError as error:
            problems.extend(error.problems)
    if problems:
        raise SecretsError(problems)
    return MqttSecrets(password, context)
