"""The config file: shipped files validate, every kind of mistake gives exit 78 naming the key."""

from __future__ import annotations

import re
import shutil
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import annotated_types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from camclassd import cli
from camclassd.cameras import CameraBase
from camclassd.config import CAMERA_MODELS, Config
from camclassd.configfile import load_config, parse_config, resolve_path
from camclassd.default_config import render_default_config
from camclassd.errors import EXIT_CONFIG, ConfigError
from camclassd.tomltext import key_lines, render_toml_key, render_toml_value
from tests.conftest import REPO, run_cli

CONFIG_DIR = REPO / "config"
SHIPPED = sorted(CONFIG_DIR.glob("*.toml")) + sorted((CONFIG_DIR / "examples").glob("*.toml"))
EXAMPLES = ("pi-door.toml", "usb-camera.toml", "rtsp-camera.toml", "two-cameras.toml")

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str]:
    """`camclassd check-config` in-process on `text`: (exit code, stdout + stderr)."""
    path = tmp_path / "camclassd.toml"
    path.write_text(text, encoding="utf-8")
    code = cli.main(["check-config", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


# ---- shipped files ---------------------------------------------------------------------------


def test_all_examples_are_shipped() -> None:
    names = {path.name for path in (CONFIG_DIR / "examples").glob("*.toml")}
    assert set(EXAMPLES) <= names
    assert (CONFIG_DIR / "camclassd.toml").exists()


def usable_here(path: Path, tmp_path: Path) -> Path:
    """`path`, or a copy whose MQTT password file (which must exist where the config is used:
    load_config checks) is a stand-in in tmp_path when this machine has none."""
    text = path.read_text(encoding="utf-8")
    system_password = "/etc/camclassd/mqtt_password"
    if system_password not in text or Path(system_password).exists():
        return path
    (tmp_path / "mqtt_password").write_text("hunter2\n")
    copy = tmp_path / path.name
    copy.write_text(text.replace(system_password, str(tmp_path / "mqtt_password")))
    return copy


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_shipped_config_validates(
    path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = usable_here(path, tmp_path)
    config = load_config(path)
    assert config.cameras
    assert cli.main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {path}")
    assert "mqtt:" in out and "homeassistant:" in out


def test_default_config_file_is_the_generated_output() -> None:
    shipped = (CONFIG_DIR / "camclassd.toml").read_text(encoding="utf-8")
    assert shipped == render_default_config(), (
        "config/camclassd.toml is stale: regenerate it with "
        "`camclassd default-config > config/camclassd.toml`"
    )


def test_default_config_holds_exactly_the_defaults() -> None:
    text = render_default_config()
    assert parse_config(text) == Config()
    # Every field of every section is documented (as a key or a commented key).
    for section, field_names in _documented_fields().items():
        for name in field_names:
            assert re.search(rf"^(# )?{name} = ", text, re.MULTILINE), f"{section}.{name}"


def test_default_config_camera_examples_validate_uncommented() -> None:
    text = render_default_config()
    blocks = re.findall(r"^# (\[cameras\.\w+\])\n((?:# .*\n)+)", text, re.MULTILINE)
    assert len(blocks) == len(CAMERA_MODELS) - 1
    for header, body in blocks:
        keys = [line[2:] for line in body.splitlines() if re.match(r"# \w+ = ", line)]
        config = parse_config(header + "\n" + "\n".join(keys) + "\n")
        (camera,) = config.cameras.values()
        assert camera.type in header or camera.type in body


def test_default_config_command_prints_the_file() -> None:
    result = run_cli("default-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (CONFIG_DIR / "camclassd.toml").read_text(encoding="utf-8")


def _documented_fields() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            out[name] = [n for n, f in model.model_fields.items() if not _is_model(f)]
    for cls in CAMERA_MODELS:
        fields = cls.model_fields
        tag = fields["type"].default
        out[f"cameras.{tag}"] = [n for n, f in fields.items() if not _is_model(f)]
    # A camera's sub-tables ([cameras.NAME.gate]) are documented once, under [cameras.main].
    for name, field in CameraBase.model_fields.items():
        if _is_model(field):
            assert isinstance(field.annotation, type)
            out[f"cameras.main.{name}"] = list(field.annotation.model_fields)
    return out


def _is_model(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


# ---- loading details ------------------------------------------------------------------------


def test_relative_paths_are_resolved_against_the_config_dir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text(
        '[model]\npath = "../m/x.tflite"\nlabels = "/abs/labels.txt"\n'
        '[cameras.a]\ntype = "images"\npath = "photos/*.jpg"\n'
        '[mqtt]\npassword_file = "secret"\n'
    )
    (tmp_path / "sub" / "secret").write_text("pw\n")  # checked: it must exist, there
    config = load_config(path)
    assert config.model.path == tmp_path / "m" / "x.tflite"
    assert config.model.labels == Path("/abs/labels.txt")
    assert config.cameras["a"].path == str(tmp_path / "sub" / "photos" / "*.jpg")  # type: ignore[union-attr]
    assert config.mqtt.password_file == tmp_path / "sub" / "secret"
    assert resolve_path(Path("/etc/camclassd"), Path("m.tflite")) == Path("/etc/camclassd/m.tflite")


def test_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cameras.a]\ntype = "synthetic"\n')
    config = load_config(path, overrides=["pipeline.workers=3", "mqtt.host=broker"])
    assert config.pipeline.workers == 3
    assert config.mqtt.host == "broker"
    with pytest.raises(ConfigError, match=r"pipeline\.workers = 0 \(from --set\)"):
        load_config(path, overrides=["pipeline.workers=0"])


def test_strict_types_no_silent_coercion() -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.queue_size = \"5\""):
        parse_config('[pipeline]\nqueue_size = "5"\n')
    with pytest.raises(ConfigError, match=r"mqtt\.enabled = 1"):
        parse_config("[mqtt]\nenabled = 1\n")
    # ...but an int is a fine float, and `protocol = 5` means "5".
    config = parse_config("[pipeline]\nmax_batch_wait_ms = 3\n[mqtt]\nprotocol = 5\n")
    assert config.pipeline.max_batch_wait_ms == 3.0
    assert config.mqtt.protocol == "5"


def test_key_lines_finds_tables_dotted_and_quoted_keys() -> None:
    text = (
        "# comment\n"
        "[mqtt]\n"
        'host = "x"\n'
        "tls.enabled = true\n"
        'note = """\n'
        "port = 1\n"
        '"""\n'
        '[ cameras . "front door" ]\n'
        "roi = [0, 0, 1, 1]\n"
    )
    lines = key_lines(text)
    assert lines[("mqtt",)] == 2
    assert lines[("mqtt", "host")] == 3
    assert lines[("mqtt", "tls", "enabled")] == 4
    assert ("mqtt", "port") not in lines  # inside a multi-line string
    assert lines[("cameras", "front door")] == 8
    assert lines[("cameras", "front door", "roi")] == 9


@pytest.mark.parametrize(
    ("value", "toml"),
    [
        (True, "true"),
        (3, "3"),
        (0.5, "0.5"),
        (1e-7, "1e-07"),
        ('a "q"\n\x7f', '"a \\"q\\"\\n\\u007f"'),
        ((1, 2), "[1, 2]"),
        ({"a b": 1, "c": [True]}, '{ "a b" = 1, c = [true] }'),
    ],
)
def test_render_toml_value_round_trips(value: Any, toml: str) -> None:
    assert render_toml_value(value) == toml
    parsed = tomllib.loads(f"v = {toml}")["v"]
    assert parsed == (list(value) if isinstance(value, tuple) else value)


# ---- errors name the key, the value, what is allowed and the line --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[pipeline]\nthreshold_high = 0.4\nthreshold_low = 0.6\n",
            r"pipeline\.threshold_low = 0\.6 \(line 3\): threshold_low \(0\.6\) must be <= "
            r"threshold_high",
        ),
        (
            '[cameras.front]\ntype = "picamera2"\n\nroi = [0.5, 0.5, 1.2, 0.9]\n',
            r"cameras\.front\.roi = \[0\.5, 0\.5, 1\.2, 0\.9\] \(line 4\): .*inside the frame",
        ),
        (
            '[cameras.front]\ntype = "synthetic"\ncrop = "roi"\n',
            r"cameras\.front\.roi \(line 1\): crop = 'roi' needs roi",
        ),
        (
            '[mqtt.tls]\nenabled = true\ncert_file = "c.pem"\n',
            r"mqtt\.tls\.key_file \(line 1\): cert_file and key_file must be given together",
        ),
        (
            "[mqtt]\nreconnect_min_s = 90\n",
            r"mqtt\.reconnect_min_s = 90 \(line 2\): .*must be <= reconnect_max_s",
        ),
        (
            '[cameras.x]\ntype = "synthetic"\nenabled = false\n',
            r"cameras = .*\(line 1\): at least one camera must be configured and enabled",
        ),
        (
            '[cameras."front door"]\ntype = "synthetic"\n',
            r'cameras\."front door" = .*\(line 1\): camera name .* may only hold',
        ),
    ],
    ids=[
        "thresholds",
        "roi-outside",
        "crop-roi-without-roi",
        "tls-pair",
        "backoff",
        "no-camera",
        "name",
    ],
)
def test_cross_field_rules_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    code, out = check(tmp_path, capsys, text)
    assert code == EXIT_CONFIG
    assert re.search(expected, out), out
    assert out.startswith("camclassd check-config: error: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[pipeline]\nqueue_sise = 4\n",
            r"pipeline\.queue_sise = 4 \(line 2\): unknown key; did you mean 'queue_size'\?",
        ),
        (
            '[cameras.a]\ntype = "picamera2"\nfsp = 3\n',
            r"cameras\.a\.fsp = 3 \(line 3\): unknown key; did you mean 'fps'\?",
        ),
        (
            "[mqtt.tls]\ninsecur = true\n",
            r"mqtt\.tls\.insecur = true \(line 2\): .*did you mean 'insecure'\?",
        ),
        (
            "[pipelin]\nworkers = 2\n",
            r"pipelin = .*\(line 1\): unknown section; did you mean 'pipeline'\?",
        ),
        (
            '[cameras.a]\ntype = "opencvv"\nuri = "0"\n',
            r"cameras\.a\.type = \"opencvv\" \(line 2\): unknown camera type; "
            r".*did you mean 'opencv'\?",
        ),
        (
            '[cameras.a]\ntype = "synthetic"\ncrop = "centre"\n',
            r"cameras\.a\.crop = \"centre\" \(line 3\): Input should be 'center', 'roi', "
            r"'squash' or 'letterbox'; did you mean 'center'\?",
        ),
        ("[cameras.a]\nwidth = 3\n", r"cameras\.a\.type \(line 1\): every camera needs a type"),
        ('[cameras.a]\ntype = "opencv"\n', r"cameras\.a\.uri \(line 1\): required key is missing"),
        (
            "[bogus]\nx = 1\n",
            r"bogus = \{ x = 1 \} \(line 1\): unknown section; "
            r"allowed here: cameras, collect, device",
        ),
        ("pipeline = 3\n", r"pipeline = 3 \(line 1\): must be a table"),
        (
            '[cameras.a]\ntype = "picamera2"\nlores = [320]\n',
            r"cameras\.a\.lores = \[320\] \(line 3\): .*too few items; expected \[width, height\]",
        ),
        (
            "[pipeline]\nmax_rate_hz = nan\n",
            r"pipeline\.max_rate_hz = nan \(line 2\): must be a finite number",
        ),
        (
            "[device]\nname = 1979-05-27\n",
            r"device\.name = .*\(line 2\): Input should be a valid string",
        ),
    ],
)
def test_mistakes_are_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    code, out = check(tmp_path, capsys, text)
    assert code == EXIT_CONFIG
    assert re.search(expected, out), out


def test_every_error_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        '[device]\nid = "bad id"\n'
        '[pipeline]\nqueue_size = 0\nworkers = "2"\n'
        "[mqtt]\nport = 70000\n"
        '[logging]\nlevel = "verbose"\n'
    )
    code, out = check(tmp_path, capsys, text)
    assert code == EXIT_CONFIG
    assert "5 errors" in out
    for key in (
        "device.id",
        "pipeline.queue_size",
        "pipeline.workers",
        "mqtt.port",
        "logging.level",
    ):
        assert f"  - {key} = " in out
    assert "'debug', 'info', 'warning' or 'error'" in out  # what is allowed


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("[pipeline]\nqueue_size = = 3\n", 2, 14),
        ("[pipeline\nqueue_size = 3\n", 1, 10),
        ('[mqtt]\nhost = "unterminated\n', 2, 21),
        ("[mqtt]\nport = 1\nport = 2\n", 3, 9),
    ],
)
def test_broken_toml_gives_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, column: int
) -> None:
    code, out = check(tmp_path, capsys, text)
    assert code == EXIT_CONFIG
    assert f"not valid TOML: line {line}, column {column}:" in out, out


def test_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(tmp_path / "missing.toml")]) == EXIT_CONFIG
    assert "missing.toml: no such file" in capsys.readouterr().err
    assert cli.main(["check-config", str(tmp_path)]) == EXIT_CONFIG
    assert "is a directory" in capsys.readouterr().err
    (tmp_path / "latin1.toml").write_bytes(b'[device]\nname = "caf\xe9"\n')
    assert cli.main(["check-config", str(tmp_path / "latin1.toml")]) == EXIT_CONFIG
    assert "not UTF-8" in capsys.readouterr().err


def test_summary_hides_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # (not tmp_path: its name, from this test's, holds the word "secret")
    path = usable_here(CONFIG_DIR / "examples" / "rtsp-camera.toml", tmp_path_factory.mktemp("c"))
    assert cli.main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "secret" not in out
    assert "rtsp://viewer:***@192.168.1.64" in out
    assert "mqtt.example.net:8883" in out


# ---- property-based: any bad config -> 78 and the key named, never a traceback -------------------

Section = tuple[str, type[BaseModel]]


def _sections() -> list[tuple[tuple[str, ...], type[BaseModel], str]]:
    """(table path, model, extra TOML lines the table needs) for every table of the file."""
    out: list[tuple[tuple[str, ...], type[BaseModel], str]] = []

    def walk(path: tuple[str, ...], model: type[BaseModel], needs: str) -> None:
        out.append((path, model, needs))
        for name, field in model.model_fields.items():
            if _is_model(field):
                walk((*path, name), field.annotation, "")  # type: ignore[arg-type]

    for name, field in Config.model_fields.items():
        if _is_model(field):
            walk((name,), field.annotation, "")  # type: ignore[arg-type]
    for cls in CAMERA_MODELS:
        tag = cls.model_fields["type"].default
        needs = f'type = "{tag}"\n'
        for name, field in cls.model_fields.items():
            if field.is_required():
                needs += f"{name} = {render_toml_value(field.examples[0])}\n"  # type: ignore[index]
        out.append((("cameras", "cam"), cls, needs))
    return out


SECTIONS = _sections()
ANY_SCALAR = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(st.integers(-5, 5), max_size=5),
)


def _base_types(annotation: Any) -> set[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_base_types(arg) for arg in typing.get_args(annotation)))
    if origin is Literal:
        return {("literal", typing.get_args(annotation))}
    if origin is tuple:
        return {("tuple", len(typing.get_args(annotation)))}
    return {annotation}


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether strict validation could accept `value` for this type (so it is not a bad value)."""
    for kind in _base_types(annotation):
        if kind is type(None):
            continue
        if isinstance(kind, tuple) and kind[0] == "literal":
            if value in kind[1] and type(value) in {type(v) for v in kind[1]}:
                return True
            if value == 5 and not isinstance(value, bool) and "5" in kind[1]:
                return True
        elif isinstance(kind, tuple) and kind[0] == "tuple":
            if isinstance(value, list):
                return True  # a list may well be right-typed; not a *wrong type*
        elif kind is bool:
            if isinstance(value, bool):
                return True
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif kind is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True
        elif kind in (str, Path) and isinstance(value, str):
            return True
    return False


@st.composite
def wrong_type(draw: st.DrawFn) -> tuple[tuple[str, ...], str, str, Any]:
    path, model, needs = draw(st.sampled_from(SECTIONS))
    names = [n for n, f in model.model_fields.items() if not _is_model(f) and n != "type"]
    name = draw(st.sampled_from(names))
    annotation = model.model_fields[name].annotation
    value = draw(ANY_SCALAR.filter(lambda v: not _accepts(annotation, v)))
    return path, needs, name, value


def _bounds(field: FieldInfo) -> list[tuple[str, float]]:
    bounds: list[tuple[str, float]] = []
    for item in field.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            limit = getattr(item, attr, None)
            if isinstance(item, annotated_types.BaseMetadata) and limit is not None:
                bounds.append((attr, float(limit)))
    return bounds


RANGED = [
    (path, needs, name, field, bound)
    for path, model, needs in SECTIONS
    for name, field in model.model_fields.items()
    for bound in _bounds(field)
]


@st.composite
def out_of_range(draw: st.DrawFn) -> tuple[tuple[str, ...], str, str, Any]:
    path, needs, name, field, (kind, limit) = draw(st.sampled_from(RANGED))
    is_int = int in _base_types(field.annotation)
    step = draw(st.integers(1, 10_000) if is_int else st.floats(1e-3, 1e6))
    if kind in ("ge", "gt"):
        value = limit - step if kind == "ge" else limit - step + 1 if is_int else limit - step
    else:
        value = limit + step if kind == "le" else limit + step - 1 if is_int else limit + step
    if kind == "gt" and not is_int:
        value = draw(st.sampled_from([limit, limit - step]))
    if kind == "lt" and not is_int:
        value = draw(st.sampled_from([limit, limit + step]))
    return path, needs, name, int(value) if is_int else float(value)


def _typo(word: str, data: st.DataObject) -> str:
    i = data.draw(st.integers(0, len(word) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "swap", "replace"]))
    if kind == "drop" and len(word) > 3:
        return word[:i] + word[i + 1 :]
    if kind == "swap" and i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "replace":
        return word[:i] + data.draw(st.sampled_from("xqz")) + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _table(path: tuple[str, ...], needs: str, body: str) -> str:
    """A table with the keys it needs, less the one `body` sets (TOML forbids duplicates)."""
    key = body.split(" = ", 1)[0]
    kept = "".join(line + "\n" for line in needs.splitlines() if not line.startswith(f"{key} = "))
    return f"[{'.'.join(path)}]\n{kept}{body}"


def _assert_names_key(code: int, out: str, key: str, text: str) -> None:
    assert code == EXIT_CONFIG, out
    assert "Traceback" not in out
    assert out.startswith("camclassd check-config: error: ")
    assert f"  - {key}" in out, f"{key!r} not named in:\n{out}"
    match = re.search(rf"  - {re.escape(key)}[ =].*\(line (\d+)\)", out)
    assert match, out
    # The line is the one where the key is written.
    line = text.splitlines()[int(match.group(1)) - 1]
    assert line.startswith(key.rsplit(".", 1)[-1] + " = "), (line, out)


@pytest.mark.parametrize("bad_value", [wrong_type, out_of_range])
@HYPOTHESIS
@given(data=st.data())
def test_wrong_types_and_out_of_range_values_name_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad_value: Callable[[], st.SearchStrategy[tuple[tuple[str, ...], str, str, Any]]],
    data: st.DataObject,
) -> None:
    path, needs, name, value = data.draw(bad_value())
    text = _table(path, needs, f"{name} = {render_toml_value(value)}\n")
    code, out = check(tmp_path, capsys, text)
    _assert_names_key(code, out, ".".join((*path, name)), text)


@HYPOTHESIS
@given(data=st.data())
def test_unknown_keys_and_typos_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    path, model, needs = data.draw(st.sampled_from(SECTIONS))
    names = [n for n, f in model.model_fields.items() if not _is_model(f)]
    if data.draw(st.booleans()):
        real = data.draw(st.sampled_from(names))
        key = _typo(real, data)
    else:
        real, key = "", data.draw(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True))
    if key in model.model_fields:
        return
    text = _table(path, needs, f"{key} = 1\n")
    code, out = check(tmp_path, capsys, text)
    _assert_names_key(code, out, ".".join((*path, key)), text)
    assert "unknown key" in out
    if real and len(real) >= 5:
        assert "did you mean '" in out, out


@HYPOTHESIS
@given(data=st.data())
def test_broken_toml_never_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    text = (CONFIG_DIR / "examples" / "pi-door.toml").read_text()
    position = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(["=", "[", "]", '"', "'''", "{", "\n= 1\n", "x", ",", "\\"]))
    broken = text[:position] + junk + text[position:]
    code, out = check(tmp_path, capsys, broken)
    assert "Traceback" not in out
    try:
        tomllib.loads(broken)
    except tomllib.TOMLDecodeError:
        assert code == EXIT_CONFIG
        assert re.search(r"not valid TOML: line \d+, column \d+", out), out
    else:
        assert code in (0, EXIT_CONFIG), out


def _names() -> list[str]:
    names = {"cameras", "cam", "type", "picamera2", "opencv", "images", "synthetic"}
    for _, model, _ in SECTIONS:
        names.update(model.model_fields)
    names.update(Config.model_fields)
    return sorted(names)


KEYS = st.one_of(st.sampled_from(_names()), st.text(min_size=1, max_size=8))
DOCUMENTS = st.dictionaries(
    KEYS,
    st.recursive(
        ANY_SCALAR,
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=4)
        ),
        max_leaves=12,
    ),
    max_size=5,
)


@HYPOTHESIS
@given(document=DOCUMENTS)
def test_any_document_gives_ok_or_78_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any]
) -> None:
    text = "".join(f"{render_toml_key(k)} = {render_toml_value(v)}\n" for k, v in document.items())
    code, out = check(tmp_path, capsys, text)
    assert "Traceback" not in out
    assert code in (0, EXIT_CONFIG), out
    if code == EXIT_CONFIG:
        body = out.rstrip("\n").split("\n")[1:]
        assert body, out
        assert all(line.startswith("  - ") for line in body), out


# ---- through the real CLI --------------------------------------------------------------------


def test_cli_subprocess_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[pipeline]\nqueue_sise = 4\n[cameras.front]\ntype = "picamera2"\nroi = [2, 0, 1, 1]\n'
    )
    result = run_cli("check-config", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "Traceback" not in result.stderr
    assert (
        "pipeline.queue_sise = 4 (line 2): unknown key; did you mean 'queue_size'?" in result.stderr
    )
    assert "cameras.front.roi = [2, 0, 1, 1] (line 5)" in result.stderr
    assert result.stdout == ""


def test_cli_subprocess_broken_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[mqtt\nhost = 1\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "not valid TOML: line 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_subprocess_ok() -> None:
    result = run_cli("check-config", str(CONFIG_DIR / "examples" / "two-cameras.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")
    assert "camera porch: picamera2" in result.stdout
    assert "camera shed: opencv /dev/video0" in result.stdout


def test_secret_values_are_never_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = '[mqtt]\npassword = "hunter2"\napi_token = "abc123xyz"\nclient_secret = 7\n'
    code, out = check(tmp_path, capsys, text)
    assert code == EXIT_CONFIG
    assert "mqtt.password = *** (line 2): unknown key" in out, out
    assert "mqtt.api_token = *** (line 3)" in out, out
    assert "mqtt.client_secret = *** (line 4)" in out, out
    for secret in ("hunter2", "abc123xyz", "= 7"):
        assert secret not in out, out


# ---- files the config points at ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(
    tmp_path_factory: pytest.TempPathFactory, certificates: dict[str, Path]
) -> dict[str, Path]:
    """The test certificate and key (made by conftest with openssl), junk and a password."""
    d = tmp_path_factory.mktemp("tls")
    shutil.copy(certificates["server.crt"], d / "client.crt")
    shutil.copy(certificates["server.key"], d / "client.key")
    (d / "junk.pem").write_text("not a certificate\n")
    (d / "password").write_text("hunter2\n")
    return {name: d / name for name in ("client.crt", "client.key", "junk.pem", "password")}


def _mqtt(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "camclassd.toml"
    path.write_text('[mqtt]\nhost = "localhost"\n' + body, encoding="utf-8")
    return path


def test_used_password_and_tls_files_that_work_pass(
    tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    path = _mqtt(
        tmp_path,
        f'password_file = "{tls_files["password"]}"\n[mqtt.tls]\nenabled = true\n'
        f'ca_file = "{tls_files["client.crt"]}"\ncert_file = "{tls_files["client.crt"]}"\n'
        f'key_file = "{tls_files["client.key"]}"\n',
    )
    assert load_config(path).mqtt.tls.enabled
    # Files that are not used are not checked.
    off = _mqtt(tmp_path, 'enabled = false\npassword_file = "nope"\n')
    assert load_config(off).mqtt.password_file == tmp_path / "nope"


def test_missing_password_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mqtt(tmp_path, 'password_file = "mqtt_password"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert raised.value.exit_code == EXIT_CONFIG
    assert f'mqtt.password_file = "{tmp_path / "mqtt_password"}"' in message, message
    assert "No such file" in message
    assert cli.main(["check-config", str(path)]) == EXIT_CONFIG  # not "OK"
    assert "OK" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tls", "key"),
    [
        ({"ca_file": "missing-ca.pem"}, "mqtt.tls.ca_file"),
        ({"ca_file": "junk.pem"}, "mqtt.tls.ca_file"),
        ({"cert_file": "client.crt", "key_file": "missing.key"}, "mqtt.tls.key_file"),
        ({"cert_file": "junk.pem", "key_file": "client.key"}, "mqtt.tls.cert_file"),
        ({"cert_file": "client.crt", "key_file": "junk.pem"}, "mqtt.tls.cert_file"),
    ],
    ids=["missing-ca", "junk-ca", "missing-key", "junk-cert", "junk-key"],
)
def test_missing_or_junk_tls_files_are_config_errors(
    tmp_path: Path, tls_files: dict[str, Path], tls: dict[str, str], key: str
) -> None:
    for name in ("client.crt", "client.key", "junk.pem"):
        shutil.copy(tls_files[name], tmp_path / name)
    lines = "".join(f'{k} = "{v}"\n' for k, v in tls.items())
    path = _mqtt(tmp_path, f"[mqtt.tls]\nenabled = true\n{lines}")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert f"  - {key} = " in message, message
    named = tls.get(key.rsplit(".", 1)[-1], next(iter(tls.values())))
    assert str(tmp_path / named) in message, message
    # `run` fails the same way, with exit 78, before starting anything.
    result = run_cli("run", "--config", str(path), timeout=60)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert key in result.stderr
