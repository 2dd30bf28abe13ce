"""`python -m tests.training.make_model OUT`: the state dataset and a model trained on it,
for runtimes whose venv cannot train (tflite-runtime: no TFLite schema, no scikit-image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.training.data import state_dataset


def main(out: Path) -> int:
    data = state_dataset(out / "data" / "door", 8)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "camclassd",
            "train",
            str(data),
            "--out",
            str(out / "door"),
            "--no-progress",
            "--views",
            "2",
            "--folds",
            "2",
        ],
        check=False,
        stdout=subprocess.DEVNULL,
    ).returncode


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
