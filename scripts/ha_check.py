"""camclassd against a real Home Assistant (scripts/test-homeassistant.sh runs this with HA's
venv python: it imports HA's own MQTT schemas).

Checks, in order: the per-component configs (today's form) give the entities, a user renames
one; the daemon restarted in the device form hands them over (same entity ids, the rename
kept); every entity on one device with the right states and attributes; the image serves the
JPEG the daemon sent; the snapshot button brings a snapshot; the pause switch pauses and
resumes (status says so); the event fires on a label change; SIGKILL -> unavailable, back ->
available; HA restarted -> live states again (birth message); a camera renamed + SIGHUP ->
old entities gone, new there; every discovery payload passes HA's own schema with no key
dropped; HA's log has no warning or error about them. Exit 0 when all passed.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ha_harness import (
    DEVICE,
    PREFIX,
    Broker,
    Daemon,
    Failures,
    HomeAssistant,
    Mosquitto,
    inside_root,
    wait_until,
)

BASE = f"{PREFIX}/{DEVICE}"
UID = f"camclassd_{DEVICE}_"
CAMERA_COMPONENTS = (
    "label",
    "score",
    "latency",
    "snapshot",
    "label_changed",
    "take_snapshot",
)
DEVICE_COMPONENTS = (
    "fps",
    "inference_p50",
    "frames_dropped",
    "cpu_temperature",
    "throttled",
    "reload",
    "pause",
)
DIAGNOSTIC = ("latency", "inference_p50", "frames_dropped", "cpu_temperature", "throttled")
GONE = ("unavailable",)
# Lines of HA's log that concern our payloads: MQTT, templates and the entity platforms.
OURS = re.compile(
    r"mqtt|camclassd|ha.test|template|\[homeassistant\.components\.(sensor|binary_sensor|"
    r"image|event|button|switch)",
    re.IGNORECASE,
)


def unique_ids(camera: str) -> list[str]:
    return [UID + c for c in DEVICE_COMPONENTS] + [f"{UID}{camera}_{c}" for c in CAMERA_COMPONENTS]


def by_unique_id(ha: HomeAssistant) -> dict[str, dict[str, Any]]:
    return {e["unique_id"]: e for e in ha.entities() if e["unique_id"].startswith(UID)}


def live(state: dict[str, Any] | None) -> bool:
    return state is not None and state["state"] not in ("unavailable", "unknown")


def validate_in(args: argparse.Namespace, work: Path, sent: list[Any]) -> list[str]:
    """ha_schema.py run by the release under test's python (chrooted too)."""
    (work / "payloads.json").write_text(json.dumps(sent))
    shutil.copy(Path(__file__).with_name("ha_schema.py"), work / "ha_schema.py")
    root = Path(args.root) if args.root else None
    inside = [str(inside_root(work / name, root)) for name in ("ha_schema.py", "payloads.json")]
    done = subprocess.run(
        [*shlex.split(args.schema_python), *inside], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return [f"ha_schema.py failed: {done.stderr.strip()[-500:]}"]
    problems: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return problems


def device_components(payload: bytes | None) -> dict[str, Any] | None:
    """The components of a retained device config (None: no config)."""
    if not payload:
        return None
    components: dict[str, Any] = json.loads(payload).get("components", {})
    return components


def table(ha: HomeAssistant) -> str:
    states = ha.states()
    rows = []
    for entry in sorted(ha.entities(), key=lambda e: e["entity_id"]):
        state = states.get(entry["entity_id"], {})
        attrs = state.get("attributes", {})
        unit = attrs.get("unit_of_measurement", "")
        shown = str(state.get("state", "-"))[:32]
        rows.append(
            f"| {entry['entity_id']} | {attrs.get('friendly_name', '')} | {shown} {unit} | "
            f"{entry.get('entity_category') or ''} |"
        )
    head = "| entity id | name | state | category |\n|---|---|---|---|"
    return "\n".join([head, *rows])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hass", required=True, help="the command that runs hass")
    parser.add_argument("--root", default="", help="the root hass runs chrooted in, if any")
    parser.add_argument(
        "--schema-python", required=True, help="the command that runs that release's python"
    )
    parser.add_argument("--camclassd", required=True)
    parser.add_argument("--mosquitto", required=True)
    parser.add_argument(
        "--variants", type=Path, help="more payloads to validate (JSON from ha_variants.py)"
    )
    args = parser.parse_args(argv)
    # Under the root when HA runs chrooted: its config directory must be visible inside.
    tmp = Path(args.root) / "tmp" if args.root else None
    work = Path(tempfile.mkdtemp(prefix="camclassd-ha-", dir=tmp))
    # A SIGTERM (CI's timeout) still stops HA, the daemon and mosquitto in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    failures = Failures()
    timings: dict[str, float] = {}
    broker_process = Mosquitto(args.mosquitto, work)
    ha = daemon = None
    try:
        root = Path(args.root) if args.root else None
        ha = HomeAssistant(shlex.split(args.hass), work / "ha", root)
        daemon = Daemon(args.camclassd, work, broker_process.port)
        run_checks(args, work, broker_process, ha, daemon, failures, timings)
    except AssertionError as error:
        failures.check(False, f"aborted: {error}")
    finally:
        if daemon is not None:
            daemon.stop()
        if ha is not None:
            ha.stop()
        broker_process.stop()
    print("\n== timings")
    for name, value in timings.items():
        print(f"  {name}: {value:.2f} s")
    if failures.items:
        print(f"\n{len(failures.items)} check(s) failed; logs in {work}")
        for item in failures.items:
            print(f"  - {item}")
        return 1
    print("\nall checks passed")
    shutil.rmtree(work, ignore_errors=True)  # kept (and named above) only when a check failed
    return 0


def run_checks(  # noqa: PLR0917 (one run, its parts)
    args: argparse.Namespace,
    work: Path,
    mosquitto: Mosquitto,
    ha: HomeAssistant,
    daemon: Daemon,
    failures: Failures,
    timings: dict[str, float],
) -> None:
    check = failures.check
    broker = Broker(mosquitto.port)

    print("== Home Assistant: start, onboard, MQTT integration", flush=True)
    timings["HA start (fresh)"] = ha.start()
    ha.onboard()
    ha.add_mqtt(mosquitto.port)
    wait_until(lambda: broker.since(0, "homeassistant/status"), 60, "HA's birth message", every=0.5)

    print("== per-component discovery (today's form), then a user renames an entity", flush=True)
    daemon.write("front", "components")
    daemon.start()
    wanted = unique_ids("front")
    old = wait_until(
        lambda: (found := by_unique_id(ha)) and set(wanted) <= set(found) and found,
        90,
        "the per-component entities",
        every=0.5,
    )
    renamed = "sensor.front_door_what_it_sees"
    ha.ws(
        {
            "type": "config/entity_registry/update",
            "entity_id": old[UID + "front_label"]["entity_id"],
            "new_entity_id": renamed,
        }
    )
    ids_before = {uid: e["entity_id"] for uid, e in by_unique_id(ha).items()}
    check(ids_before[UID + "front_label"] == renamed, f"renamed the label entity to {renamed}")
    daemon.stop()

    print("== device discovery: the daemon hands the entities over", flush=True)
    daemon.write("front", "device")
    daemon.start()
    device_topic = f"homeassistant/device/{DEVICE}/config"
    wait_until(lambda: broker.retained(device_topic), 60, "the device config")
    wait_until(
        lambda: all(live(ha.states().get(ids_before[UID + c])) for c in ("fps", "front_label")),
        60,
        "live states after the hand-over",
        every=0.5,
    )
    time.sleep(2)  # let HA settle every component
    after = by_unique_id(ha)
    ids_after = {uid: e["entity_id"] for uid, e in after.items()}
    check(ids_after == ids_before, "the hand-over kept every entity id (and the user's rename)")
    leftovers = {
        t: p for t, p in broker.retained(f"homeassistant/+/{DEVICE}/+/config").items() if p
    }
    check(not leftovers, f"no per-component config left retained ({sorted(leftovers)})")

    print("== entities, device, states and attributes", flush=True)
    check(set(wanted) <= set(after), f"all {len(wanted)} entities exist")
    devices = {e["device_id"] for e in after.values()}
    check(len(devices) == 1, f"all on one device ({len(devices)} devices)")
    (registry,) = ha.ws({"type": "config/device_registry/list"})
    device = next((d for d in registry if d["id"] in devices), {})
    check(device.get("name") == "HA test", f"device name {device.get('name')!r}")
    check(device.get("manufacturer") == "camclassd", "device manufacturer")
    check(bool(device.get("sw_version")), f"device sw_version {device.get('sw_version')!r}")
    for component in DIAGNOSTIC:
        uid = UID + (f"front_{component}" if component == "latency" else component)
        check(after[uid].get("entity_category") == "diagnostic", f"{component} is diagnostic")
    check(after[UID + "reload"].get("entity_category") == "config", "reload is a config button")
    states = wait_until(
        lambda: (
            (s := ha.states())
            and all(
                live(s.get(ids_after[UID + c])) for c in ("fps", "inference_p50", "frames_dropped")
            )
            and s
        ),
        30,
        "metrics sensors",
    )

    def state_of(uid: str) -> dict[str, Any]:
        return states[ids_after[uid]]

    label = state_of(UID + "front_label")
    check(live(label), f"label state {label['state']!r}")
    check(isinstance(label["attributes"].get("top"), list), "label has the top-3 attribute")
    check("stable_label" in label["attributes"], "label has the stable_label attribute")
    score = state_of(UID + "front_score")
    check(0 <= float(score["state"]) <= 100, f"score {score['state']} %")
    check(score["attributes"].get("state_class") == "measurement", "score is a measurement")
    latency = state_of(UID + "front_latency")
    check(float(latency["state"]) > 0, f"latency {latency['state']} ms")
    check(float(state_of(UID + "fps")["state"]) > 0, f"fps {state_of(UID + 'fps')['state']}")
    check(float(state_of(UID + "inference_p50")["state"]) > 0, "inference p50 > 0")
    check(float(state_of(UID + "frames_dropped")["state"]) >= 0, "frames dropped >= 0")
    temperature = state_of(UID + "cpu_temperature")["state"]
    check(temperature == "unknown" or float(temperature) > 0, f"CPU temperature {temperature}")
    throttled = state_of(UID + "throttled")["state"]
    check(throttled in ("unknown", "off", "on"), f"throttled {throttled}")
    switch = state_of(UID + "pause")
    check(switch["state"] == "off", f"pause switch {switch['state']}")
    event = state_of(UID + "front_label_changed")
    check(event["attributes"].get("event_types") == ["changed"], "event types ['changed']")

    print("== image entity serves the JPEG the daemon sent", flush=True)
    snapshot_topic = f"{BASE}/front/snapshot"
    image_id = ids_after[UID + "front_snapshot"]
    wait_until(lambda: broker.since(0, snapshot_topic), 30, "a first snapshot")
    wait_until(lambda: live(ha.states().get(image_id)), 30, "the image entity's state")
    served = ha.request("GET", f"/api/image_proxy/{image_id}")
    sent = {m[2] for m in broker.since(0, snapshot_topic)}
    check(
        served[:2] == b"\xff\xd8" and served in sent, f"image serves a sent JPEG ({len(served)} B)"
    )

    print("== snapshot button -> a snapshot", flush=True)
    start = time.monotonic()
    ha.service("button", "press", ids_after[UID + "front_take_snapshot"])
    arrived = wait_until(lambda: broker.since(start, snapshot_topic), 30, "the snapshot")
    timings["button press -> snapshot on MQTT"] = arrived[0][0] - start
    replies = broker.since(start, f"{BASE}/cmd/snapshot/reply")
    check(bool(replies) and json.loads(replies[0][2])["ok"], "the snapshot command was answered ok")

    print("== pause switch", flush=True)
    status_topic = f"{BASE}/status"
    for service, state, ha_state in (("turn_on", "paused", "on"), ("turn_off", "running", "off")):
        start = time.monotonic()
        ha.service("switch", service, ids_after[UID + "pause"])
        wait_until(
            lambda state=state, start=start: any(
                json.loads(m[2])["state"] == state for m in broker.since(start, status_topic)
            ),
            20,
            f"status {state}",
        )
        wait_until(
            lambda ha_state=ha_state: ha.states()[ids_after[UID + "pause"]]["state"] == ha_state,
            20,
            f"switch {ha_state}",
        )
        check(True, f"switch.{service}: status {state}, switch {ha_state}")

    print("== reload button", flush=True)
    start = time.monotonic()
    ha.service("button", "press", ids_after[UID + "reload"])
    reply = wait_until(lambda: broker.since(start, f"{BASE}/cmd/reload/reply"), 60, "reload reply")
    check(json.loads(reply[0][2])["ok"] is True, "the reload button's command was answered ok")

    print("== event entity fires on a label change", flush=True)
    event_id = ids_after[UID + "front_label_changed"]
    before = ha.states()[event_id]["state"]
    fired = wait_until(
        lambda: (s := ha.states()[event_id])["state"] != before and s, 30, "a label event"
    )
    attrs = fired["attributes"]
    check(attrs.get("event_type") == "changed" and "label" in attrs, f"event {attrs}")
    events = broker.since(0, f"{BASE}/front/event")
    check(all(not m[3] for m in events), "event messages are not retained")

    print("== SIGKILL -> unavailable; back -> available", flush=True)
    ours = list(ids_after.values())
    start = time.monotonic()
    daemon.stop(signal.SIGKILL)
    wait_until(lambda: all(ha.states()[e]["state"] in GONE for e in ours), 30, "unavailable")
    timings["SIGKILL -> all unavailable"] = time.monotonic() - start
    check(True, "every entity unavailable after SIGKILL")
    start = time.monotonic()
    daemon.start()
    wait_until(lambda: all(ha.states()[e]["state"] not in GONE for e in ours), 60, "available")
    timings["daemon start -> all available"] = time.monotonic() - start
    check(True, "every entity available again")

    print("== HA restarted with the daemon running: back through the birth message", flush=True)
    ha.stop()
    # As if the broker had lost its retained messages too (no persistence): only the daemon's
    # answer to HA's birth message can bring the entities back.
    broker.client.publish(device_topic, b"", qos=1, retain=True).wait_for_publish(5)
    check(not broker.retained(device_topic), "the retained device config is gone while HA is down")
    start = time.monotonic()
    timings["HA restart: process start -> HTTP API up"] = ha.start()
    birth = wait_until(
        lambda: [m for m in broker.since(start, "homeassistant/status") if m[2] == b"online"],
        120,
        "HA's birth message",
        every=0.2,
    )[0][0]
    timings["HA restart: process start -> birth message"] = birth - start
    wait_until(
        lambda: (
            (s := ha.states())
            and all(live(s.get(ids_after[UID + c])) for c in ("front_label", "fps", "front_score"))
        ),
        120,
        "live states after the HA restart",
        every=0.2,
    )
    now = time.monotonic()
    timings["HA restart: birth message -> live states"] = now - birth
    timings["HA restart: process start -> live states"] = now - start
    resent = broker.since(birth, device_topic)
    check(bool(resent), "the daemon answered the birth message with its device config")
    check(True, "live states after HA restarted")
    # No snapshot was taken since: the image comes back from the broker's retained copy.
    wait_until(lambda: live(ha.states().get(image_id)), 30, "the image entity after the restart")
    check(
        not broker.since(start, snapshot_topic),
        "the snapshot image is back after the restart, from the broker's retained copy",
    )

    print("== camera renamed + reload (SIGHUP)", flush=True)
    daemon.write("porch", "device")
    daemon.send(signal.SIGHUP)
    new_ids = unique_ids("porch")
    found = wait_until(
        lambda: (
            (f := by_unique_id(ha))
            and set(new_ids) <= set(f)
            and not any(u.startswith(UID + "front_") for u in f)
            and f
        ),
        60,
        "the renamed camera's entities",
        every=0.5,
    )
    check(set(found) == set(new_ids), f"{len(new_ids)} entities, none of camera 'front' left")
    gone = [e for e in ha.states() if e in {ids_after[u] for u in ids_after if "_front_" in u}]
    check(not gone, f"the old camera's states are gone ({gone})")
    what = "the broker to forget the removed camera's retained snapshot"
    wait_until(lambda: not broker.retained(snapshot_topic), 10, what)
    check(True, "the broker no longer keeps the removed camera's snapshot")
    wait_until(
        lambda: live(ha.states().get(found[UID + "porch_label"]["entity_id"])),
        30,
        "the new camera's label",
    )

    print("== back to per-component discovery on reload: the entities are handed back", flush=True)
    porch_ids = {uid: e["entity_id"] for uid, e in found.items()}
    daemon.write("porch", "components")
    daemon.send(signal.SIGHUP)
    wait_until(
        lambda: (
            device_components(broker.retained(device_topic).get(device_topic)) == {}
            and len(broker.retained(f"homeassistant/+/{DEVICE}/+/config")) == len(new_ids)
        ),
        60,
        "the per-component configs back",
    )
    time.sleep(3)  # let HA settle every component
    back = {uid: e["entity_id"] for uid, e in by_unique_id(ha).items()}
    check(back == porch_ids, "the hand-back kept every entity id")
    wait_until(
        lambda: live(ha.states().get(porch_ids[UID + "porch_label"])),
        30,
        "live states after the hand-back",
    )
    check(True, "live states after the hand-back")

    print("== every discovery payload against HA's own schema", flush=True)
    sent = [
        (m[1], json.loads(m[2]))
        for m in broker.since(0)
        if m[1].startswith("homeassistant/")
        and m[1].endswith("/config")
        and m[2]
        and b"migrate_discovery" not in m[2]
    ]
    variants = json.loads(args.variants.read_text()) if args.variants else []
    problems = validate_in(args, work, [*sent, *(tuple(v) for v in variants)])
    check(
        not problems,
        f"{len(sent)} payloads sent + {len(variants)} variants (few labels, gate, support link): "
        f"no key dropped or refused {problems[:5]}",
    )

    print("== HA's log", flush=True)
    lines = [
        line
        for line in ha.log_text().splitlines()
        if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)
    ]
    about_us = [line for line in lines if OURS.search(line)]
    for line in lines:
        print(f"  log: {line[:300]}")
    check(not about_us, f"no warning or error about our payloads ({len(about_us)})")

    print("\n== the entity table as Home Assistant shows it\n")
    print(table(ha))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
