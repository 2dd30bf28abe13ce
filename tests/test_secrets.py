"""The one reader of secrets, as run, check-config and watch use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from camclassd.configfile import parse_config
from camclassd.errors import EXIT_CONFIG
from camclassd.secrets import SecretsError, load_mqtt_secrets, read_password, tls_context


def test_a_watch_flag_is_named_as_the_user_typed_it(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SecretsError) as raised:
        tls_context(junk, option=lambda name: "--" + name.replace("_", "-"))
    assert raised.value.exit_code == EXIT_CONFIG
    assert [p.key for p in raised.value.problems] == ["--ca-file"]
    assert "no usable CA certificate" in str(raised.value)
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(SecretsError, match=r"--password-file: .* is empty"):
        read_password(empty, key="--password-file", credential=False)


def test_every_bad_file_of_a_config_is_listed_once(tmp_path: Path) -> None:
    config = parse_config(
        '[mqtt]\npassword_file = "gone"\n[mqtt.tls]\nenabled = true\nca_file = "gone.pem"\n',
        config_dir=tmp_path,
    )
    with pytest.raises(SecretsError) as raised:
        load_mqtt_secrets(config.mqtt)
    assert [(p.key, p.path) for p in raised.value.problems] == [
        ("mqtt.password_file", tmp_path / "gone"),
        ("mqtt.tls.ca_file", tmp_path / "gone.pem"),
    ]


def test_the_context_is_built_once_and_handed_over(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    config = parse_config(
        '[mqtt]\npassword_file = "pw"\n[mqtt.tls]\nenabled = true\n', config_dir=tmp_path
    )
    secrets = load_mqtt_secrets(config.mqtt)
    assert secrets.password == "s3cret"
    assert secrets.tls is not None and secrets.tls.check_hostname  # the system CAs, verified
    off = parse_config("[mqtt]\nenabled = false\npassword_file = 'gone'\n", config_dir=tmp_path)
    assert load_mqtt_secrets(off.mqtt).password is None  # not used: not read
