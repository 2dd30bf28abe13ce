"""What an OpenCV camera's `uri` names, told from its text alone.

Kept apart from the OpenCV source (which imports cv2) because the config loader needs it too:
only a file path is resolved against the config file's directory.
"""

from __future__ import annotations

import re

_DEVICE_PATH = re.compile(r"^/dev/video(\d+)$")
_URL = re.compile(r"^(rtsps?|rtmp|https?|udp|tcp)://", re.IGNORECASE)


def classify_uri(uri: str) -> str:
    """'device', 'stream' or 'file'."""
    if uri.isdigit() or _DEVICE_PATH.match(uri):
        return "device"
    if _URL.match(uri):
        return "stream"
    return "file"


def device_index(uri: str) -> int:
    """The V4L2 index of a 'device' uri: '2' or '/dev/video2' -> 2."""
    match = _DEVICE_PATH.match(uri)
    return int(match.group(1)) if match else int(uri)
