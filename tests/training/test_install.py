"""`camclassd model install|list|rollback` and `train --install`: versions, the config edit,
refusals, and a running daemon reloaded over MQTT onto the new labels."""

from __future__ import annotations

import json
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from camclassd.configfile import load_config
from camclassd.errors import ConfigError
from camclassd.training.tomledit import remove_keys, set_keys, set_model_paths
from tests.broker import Mosquitto
from tests.conftest import LABELS, UINT8_MODEL, run_cli
from tests.daemon_helpers import Message, collector, daemon

CONFIG = """\
# garage camera box
[device]
id = "{device}"   # topics use it

[cameras.door]
type = "images"
path = "{images}"
fps = 5

[model]
# the classifier in use
path = "{model}"  # shipped with camclassd
labels = '{labels}'
num_threads = 1

[pipeline]
stable_frames = 1

[mqtt]
host = "127.0.0.1"
port = {port}

[homeassistant]
enabled = false
"""


def make_config(tmp_path: Path, images: Path, port: int = 1) -> tuple[Path, str]:
    device = f"t{uuid.uuid4().hex[:8]}"
    path = tmp_path / "camclassd.toml"
    path.write_text(
        CONFIG.format(device=device, images=images, model=UINT8_MODEL, labels=LABELS, port=port)
    )
    return path, device


def _install(*args: str) -> tuple[int, str, str]:
    done = run_cli("model", *args)
    return done.returncode, done.stdout, done.stderr


# ---- the TOML edit -----------------------------------------------------------------------------


def test_the_edit_touches_only_path_and_labels() -> None:
    text = "# top\r\n[model]\r\npath = \"a\"  # keep me\r\nlabels = 'b'\r\nnum_threads = 2\r\n"
    edited = set_model_paths(text, path="/m/x.tflite", labels="/m/x.txt")
    assert edited == (
        '# top\r\n[model]\r\npath = "/m/x.tflite"  # keep me\r\nlabels = "/m/x.txt"\r\n'
        "num_threads = 2\r\n"
    )
    missing = set_model_paths("[model]\nnum_threads = 2\n[mqtt]\n", path="p", labels="l")
    assert missing == '[model]\npath = "p"\nlabels = "l"\nnum_threads = 2\n[mqtt]\n'
    absent = set_model_paths("[mqtt]\nhost = 'x'", path='we"ird', labels="l")
    assert absent == '[mqtt]\nhost = \'x\'\n\n[model]\npath = "we\\"ird"\nlabels = "l"\n'
    with pytest.raises(ConfigError, match="not a one-line string"):
        set_model_paths('[model]\npath = """\nx"""\n', path="p", labels="l")


# ---- install, list, rollback -----------------------------------------------------------------


def test_install_list_and_rollback_keep_the_users_file(
    tmp_path: Path, state_model: Path, object_model: Path, state_data: Path
) -> None:
    config, _ = make_config(tmp_path, state_data / "cat")
    original = config.read_text()
    models = tmp_path / "models"
    where = ["--config", str(config), "--models-dir", str(models)]
    code, out, err = _install("install", str(state_model), *where)
    assert code == 0, err
    assert f"installed door v1 in {models}/door/v1" in out and "systemctl reload" in out
    assert sorted(p.name for p in (models / "door" / "v1").iterdir()) == [
        "card.json",
        "card.txt",
        "door.tflite",
        "door.txt",
        "previous.json",
    ]
    first = config.read_text()
    changed = [
        (a, b) for a, b in zip(original.splitlines(), first.splitlines(), strict=True) if a != b
    ]
    assert changed == [
        (
            f'path = "{UINT8_MODEL}"  # shipped with camclassd',
            f'path = "{models}/door/v1/door.tflite"  # shipped with camclassd',
        ),
        (f"labels = '{LABELS}'", f'labels = "{models}/door/v1/door.txt"'),
    ]
    assert _install("install", str(state_model), *where)[0] == 0
    assert _install("install", str(object_model), *where)[0] == 0
    code, out, _ = _install("list", *where)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("  door v1") and lines[1].startswith("  door v2")
    assert lines[2].startswith("* objects v1") and "astronaut, cat" in lines[2]

    # rollback walks back through what was installed, to the shipped model
    for expected in ("door/v2/door.tflite", "door/v1/door.tflite", str(UINT8_MODEL)):
        code, out, err = _install("rollback", *where)
        assert code == 0, err
        assert expected in out
    assert config.read_text().replace("'", '"') == original.replace("'", '"')
    code, _, err = _install("rollback", *where)
    assert code == 66 and "nothing to roll back" in err


def test_a_model_that_does_not_load_is_refused_and_nothing_changes(
    tmp_path: Path, state_model: Path, state_data: Path
) -> None:
    config, _ = make_config(tmp_path, state_data / "cat")
    before = config.read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(state_model, broken)
    data = (broken / "door.tflite").read_bytes()
    (broken / "door.tflite").write_bytes(data[: len(data) // 2])
    code, _, err = _install(
        "install", str(broken), "--config", str(config), "--models-dir", str(tmp_path / "models")
    )
    assert code == 69, err
    assert err.count("\n") == 1 and "door.tflite" in err
    assert config.read_bytes() == before
    assert not (tmp_path / "models").exists()
    # wrong labels for the model: refused as well
    (broken / "door.tflite").write_bytes(data)
    (broken / "door.txt").write_text("a\nb\nc\n")
    code, _, err = _install(
        "install", str(broken), "--config", str(config), "--models-dir", str(tmp_path / "models")
    )
    assert code == 69 and "3 labels" in err
    assert config.read_bytes() == before


def test_a_config_that_does_not_validate_is_not_touched(
    tmp_path: Path, state_model: Path, state_data: Path
) -> None:
    config, _ = make_config(tmp_path, state_data / "cat")
    config.write_text(config.read_text().replace("num_threads = 1", "num_threads = 0"))
    before = config.read_bytes()
    code, _, err = _install(
        "install",
        str(state_model),
        "--config",
        str(config),
        "--models-dir",
        str(tmp_path / "models"),
    )
    assert code == 78, err
    assert config.read_bytes() == before


def test_train_install_reloads_the_running_daemon_over_mqtt(
    tmp_path: Path, broker: Mosquitto, state_data: Path
) -> None:
    """The daemon classifies with ImageNet; train --camera door --install --reload mqtt; that
    camera gets the model as its own, its messages then carry the new model's name and
    labels, and Home Assistant's label sensor becomes an enum of them."""
    config, device = make_config(tmp_path, state_data / "cat", broker.port)
    config.write_text(
        config.read_text().replace("[homeassistant]\nenabled = false", "[homeassistant]")
    )
    discovery = f"homeassistant/device/{device}/config"
    with (
        collector(broker.host, broker.port, [f"camclassd/{device}/#", discovery]) as sub,
        daemon(config) as proc,
    ):
        sub.wait_count("/door/classification", 2, timeout=30)
        done = run_cli(
            "train",
            str(state_data),
            "--out",
            str(tmp_path / "door"),
            "--no-progress",
            "--views",
            "2",
            "--folds",
            "2",
            "--install",
            "--camera",
            "door",
            "--config",
            str(config),
            "--models-dir",
            str(tmp_path / "models"),
            "--reload",
            "mqtt",
            timeout=180,
        )
        assert done.returncode == 0, done.stderr + proc.log()
        assert "the daemon reloaded" in done.stdout
        sub.wait_for(
            lambda ms: any(
                m.topic.endswith("/door/classification")
                and json.loads(m.payload)["model"] == "door"
                for m in ms
            ),
            timeout=30,
        )
        assert proc.alive()
    new = [m.json() for m in sub.on("/door/classification") if m.json()["model"] == "door"]
    labels = {item["label"] for message in new for item in message["top"]}
    assert labels <= {"cat", "none"} and new[-1]["top"][0]["label"] == "cat"
    configs = [json.loads(m.payload) for m in sub.on(discovery) if m.payload]
    before, after = configs[0]["components"], configs[-1]["components"]
    assert "options" not in before["door_label"]  # 1000 ImageNet labels: a plain text sensor
    assert after["door_label"]["device_class"] == "enum"
    assert set(after["door_label"]["options"]) == {"cat", "none"}
    assert set(after["door_label_changed"]["event_types"]) == {"cat", "none"}
    installed = load_config(config)
    assert installed.cameras["door"].model == tmp_path / "models" / "door" / "v1" / "door.tflite"
    assert installed.model.path.name == "efficientnet_lite0_uint8.tflite"  # [model] unchanged


def test_another_table_can_be_edited_the_same_way() -> None:
    """What a per-camera model key would need: `[cameras.door]` edited, `[cameras.yard]` not."""
    text = '[cameras.door]\ntype = "images"  # door\n\n[ cameras . yard ]\nmodel = "a"\n'
    edited = set_keys(text, "cameras.door", {"model": "/m/door.tflite"})
    assert edited == (
        '[cameras.door]\nmodel = "/m/door.tflite"\ntype = "images"  # door\n\n'
        '[ cameras . yard ]\nmodel = "a"\n'
    )
    assert set_keys(text, "cameras.yard", {"model": "b"}).endswith(
        '[ cameras . yard ]\nmodel = "b"\n'
    )


def test_remove_keys_takes_out_only_those_lines() -> None:
    text = (
        "# top\r\n[cameras.door]\r\nmodel = \"/m/a.tflite\"  # mine\r\ntype = 'images'\r\n"
        "labels = '/m/a.txt'\r\n[cameras.door.gate]\r\nmodel = \"x\"\r\n"
    )
    assert remove_keys(text, "cameras.door", ["model", "labels"]) == (
        "# top\r\n[cameras.door]\r\ntype = 'images'\r\n[cameras.door.gate]\r\nmodel = \"x\"\r\n"
    )
    absent = '[ cameras . door ]  # the door\ntype = "images"\n\n[model]\nlabels = "l"\n'
    assert remove_keys(absent, "cameras.door", ["model", "labels"]) == absent
    assert remove_keys(absent, "cameras.yard", ["model"]) == absent
    assert (
        remove_keys(absent, "model", ["labels"])
        == '[ cameras . door ]  # the door\ntype = "images"\n\n[model]\n'
    )
    with pytest.raises(ConfigError, match="not a one-line string"):
        remove_keys('[cameras.door]\nmodel = """\nx"""\n', "cameras.door", ["model"])


# ---- a camera's own model (--camera) ----------------------------------------------------------

YARD = """\
[cameras.yard]   # the other view keeps the shared model
type = "synthetic"
fps = 1
enabled = {enabled}

"""


def make_two_camera_config(
    tmp_path: Path, images: Path, yard_enabled: bool = True, port: int = 1
) -> Path:
    config, _ = make_config(tmp_path, images, port)
    yard = YARD.format(enabled=str(yard_enabled).lower())
    config.write_text(config.read_text().replace("[model]\n", f"{yard}[model]\n"))
    return config


def test_home_assistant_gets_each_cameras_own_labels(
    tmp_path: Path, broker: Mosquitto, state_model: Path, state_data: Path
) -> None:
    """[cameras.door] on the trained two-state model, yard on the shared ImageNet model: the
    door's label sensor is an enum of the door's labels and its events are typed by them, the
    yard's stays plain text with "changed" events. A reload that puts the door back on the
    shared model changes the door's two components and nothing else."""
    config = make_two_camera_config(tmp_path, state_data / "*" / "*.jpg", port=broker.port)
    own = {"model": str(state_model / "door.tflite"), "labels": str(state_model / "door.txt")}
    text = set_keys(config.read_text(), "cameras.door", own)
    config.write_text(text.replace("[homeassistant]\nenabled = false", "[homeassistant]"))
    device = load_config(config).device.resolved_id
    discovery = f"homeassistant/device/{device}/config"

    def door_events(messages: list[Message]) -> list[str]:
        return [m.json()["event_type"] for m in messages if m.topic.endswith("/door/event")]

    def newest(messages: list[Message], plain_door: bool) -> dict[str, Any] | None:
        """The newest discovery's components whose door label sensor is plain (or an enum)."""
        for message in reversed(messages):
            if message.topic == discovery and message.payload:
                found: dict[str, Any] = message.json()["components"]
                if ("options" not in found["door_label"]) == plain_door:
                    return found
        return None

    with (
        collector(broker.host, broker.port, [f"camclassd/{device}/#", discovery]) as sub,
        daemon(config) as proc,
    ):
        # cat/ then none/ images, looped: the door's stable label keeps changing
        seen = sub.wait_for(lambda ms: {"cat", "none"} <= set(door_events(ms)), timeout=30)
        before = newest(seen, plain_door=False)
        config.write_text(remove_keys(config.read_text(), "cameras.door", ["model", "labels"]))
        proc.signal(signal.SIGHUP)  # the door back on the shared [model]
        after = newest(sub.wait_for(lambda ms: bool(newest(ms, plain_door=True))), True)
        assert proc.alive(), proc.log()
    assert before is not None and after is not None
    assert set(door_events(seen)) == {"cat", "none"}  # its own labels, not "changed"
    assert before["door_label"]["device_class"] == "enum"
    assert set(before["door_label"]["options"]) == {"cat", "none"}
    assert set(before["door_label_changed"]["event_types"]) == {"cat", "none"}
    assert "options" not in before["yard_label"] and "device_class" not in before["yard_label"]
    assert before["yard_label_changed"]["event_types"] == ["changed"]
    assert after["door_label_changed"]["event_types"] == ["changed"]
    assert {cid for cid in after if after[cid] != before.get(cid)} == {
        "door_label",
        "door_label_changed",
    }


def test_install_for_a_camera_then_roll_it_back_to_the_shared_model(
    tmp_path: Path, state_model: Path, state_data: Path
) -> None:
    config = make_two_camera_config(tmp_path, state_data / "cat")
    original = config.read_bytes()
    models = tmp_path / "models"
    where = ["--config", str(config), "--models-dir", str(models)]
    code, out, err = _install("install", str(state_model), "--camera", "door", *where)
    assert code == 0, err
    v1 = models / "door" / "v1"
    assert (
        f"{config}: [cameras.door] model = {v1}/door.tflite, labels = {v1}/door.txt "
        f"(was the shared [model] {UINT8_MODEL})"
    ) in out.splitlines()
    loaded = load_config(config)
    assert loaded.cameras["door"].model == v1 / "door.tflite"
    assert loaded.cameras["door"].labels == v1 / "door.txt"
    assert loaded.cameras["yard"].model is None and loaded.model.path == UINT8_MODEL
    # two lines added under the camera's header, the rest as written
    lines = config.read_text().splitlines()
    door = lines.index("[cameras.door]")
    assert lines[door + 1 : door + 3] == [
        f'model = "{v1}/door.tflite"',
        f'labels = "{v1}/door.txt"',
    ]
    assert "\n".join(lines[: door + 1] + lines[door + 3 :]) + "\n" == original.decode()
    assert json.loads((v1 / "previous.json").read_text()) == {
        "camera": "door",
        "path": None,
        "labels": None,
    }
    checked = run_cli("check-config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert f"model {v1}/door.tflite" in checked.stdout
    yard = next(line for line in checked.stdout.splitlines() if "camera yard:" in line)
    assert "model" not in yard and f"  model: {UINT8_MODEL}," in checked.stdout
    code, out, _ = _install("list", *where)
    assert out.splitlines()[0].startswith(f"* door v1  {v1}")
    assert out.splitlines()[0].endswith("  (in use: [cameras.door])")
    assert out.splitlines()[1] == f"* {UINT8_MODEL}  (in use: [model]; not an installed version)"

    # without --camera: [model] has nothing installed; the error says which camera has
    code, _, err = _install("rollback", *where)
    assert code == 66 and "[cameras.door] uses door v1: `--camera door` rolls it back" in err
    code, out, err = _install("rollback", "--camera", "door", *where)
    assert code == 0, err
    assert (
        f"{config}: [cameras.door] model, labels unset: it follows the shared [model] "
        f"{UINT8_MODEL} (was door v1)"
    ) in out
    assert config.read_bytes() == original
    code, _, err = _install("rollback", "--camera", "door", *where)
    assert code == 66 and "no model of its own" in err


def test_a_camera_on_its_own_model_goes_back_to_it_labels_default_too(
    tmp_path: Path, state_model: Path, state_data: Path
) -> None:
    """previous.json keeps what the camera's table said: a model without a labels key (its
    labels MODEL.txt beside it) comes back without one."""
    config = make_two_camera_config(tmp_path, state_data / "cat")
    original = config.read_bytes()
    models = tmp_path / "models"
    where = ["--config", str(config), "--models-dir", str(models)]
    assert _install("install", str(state_model), "--camera", "door", *where)[0] == 0
    config.write_text(remove_keys(config.read_text(), "cameras.door", ["labels"]))
    own = config.read_bytes()
    code, out, err = _install("install", str(state_model), "--camera", "door", *where)
    assert code == 0, err
    v1, v2 = models / "door" / "v1", models / "door" / "v2"
    assert f"(was {v1}/door.tflite)" in out
    assert json.loads((v2 / "previous.json").read_text()) == {
        "camera": "door",
        "path": f"{v1}/door.tflite",
        "labels": None,
    }
    code, out, err = _install("rollback", "--camera", "door", *where)
    assert code == 0, err
    assert f"model = {v1}/door.tflite, labels unset (MODEL.txt beside it) (was door v2)" in out
    assert config.read_bytes() == own
    assert _install("rollback", "--camera", "door", *where)[0] == 0
    assert config.read_bytes() == original


def test_an_unknown_camera_is_refused_a_disabled_one_is_told(
    tmp_path: Path, state_model: Path, state_data: Path
) -> None:
    config = make_two_camera_config(tmp_path, state_data / "cat", yard_enabled=False)
    original = config.read_bytes()
    models = tmp_path / "models"
    where = ["--config", str(config), "--models-dir", str(models)]
    code, out, err = _install("install", str(state_model), "--camera", "gate", *where)
    assert code == 78, err
    assert f"{config} has no camera 'gate': it has door, yard" in err and err.count("\n") == 1
    assert config.read_bytes() == original and not models.exists()
    code, _, err = _install("rollback", "--camera", "gate", *where)
    assert code == 78 and "it has door, yard" in err

    code, out, err = _install("install", str(state_model), "--camera", "yard", *where)
    assert code == 0, err
    assert "[cameras.yard] is disabled (enabled = false)" in out
    assert load_config(config).cameras["yard"].model == models / "door" / "v1" / "door.tflite"
    code, out, _ = _install("list", *where)
    assert "(in use: [cameras.yard] (disabled))" in out
    assert _install("rollback", "--camera", "yard", *where)[0] == 0
    assert config.read_bytes() == original


def test_rollback_of_a_version_installed_for_another_table_is_refused(
    tmp_path: Path, state_model: Path, state_data: Path
) -> None:
    """A version found where it was not installed (pointed at by hand): its previous.json
    speaks of another table, so rollback says which and edits nothing."""
    config = make_two_camera_config(tmp_path, state_data / "cat")
    models = tmp_path / "models"
    where = ["--config", str(config), "--models-dir", str(models)]
    assert _install("install", str(state_model), *where)[0] == 0  # v1: [model]
    v1 = str(models / "door" / "v1" / "door.tflite")
    config.write_text(set_keys(config.read_text(), "cameras.door", {"model": v1}))
    before = config.read_bytes()
    code, _, err = _install("rollback", "--camera", "door", *where)
    assert code == 64, err
    assert "door v1 was installed for [model], not [cameras.door]" in err
    assert "`camclassd model rollback` rolls that back" in err
    assert config.read_bytes() == before

    assert _install("install", str(state_model), "--camera", "yard", *where)[0] == 0  # v2
    v2 = str(models / "door" / "v2" / "door.tflite")
    config.write_text(set_model_paths(config.read_text(), path=v2, labels=v2[:-6] + "txt"))
    before = config.read_bytes()
    code, _, err = _install("rollback", *where)
    assert code == 64, err
    assert "door v2 was installed for [cameras.yard], not [model]" in err
    assert "`camclassd model rollback --camera yard` rolls that back" in err
    assert config.read_bytes() == before
