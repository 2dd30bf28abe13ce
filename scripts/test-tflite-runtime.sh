#!/usr/bin/env bash
# Run the engine and classify tests on the fallback runtime, tflite-runtime 2.14
# (its last release: Python <= 3.11 wheels only, built against numpy 1.x).
#
#   scripts/test-tflite-runtime.sh [VENV_DIR] [PYTEST_ARGS...]     (VENV_DIR default .venv-tflite)
#
# The venv gets no ai-edge-litert, and CAMCLASSD_RUNTIME=tflite-runtime makes Engine refuse any
# other runtime, so test_forced_runtime_is_used proves which runtime ran. PYTHON picks the
# interpreter (default python3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:-.venv-tflite}
if [ $# -gt 0 ]; then shift; fi
python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null 2>&1; then
    echo "test-tflite-runtime: $python not found. tflite-runtime 2.14 has wheels for Python <= 3.11" \
        "only: install python3.11 (Debian 12 ships it) or set PYTHON=/path/to/python3.11" >&2
    exit 69
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    # keep the venv out of git without editing .gitignore (Python >= 3.13 does this itself)
    echo '*' >"$venv/.gitignore"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# tflite-runtime 2.14 was built against numpy 1.x; OpenCV >= 4.11 wheels need numpy 2.
"$venv/bin/python" -m pip install -q \
    "tflite-runtime>=2.14" "numpy<2" "opencv-python-headless>=4.8,<4.11" \
    "pydantic>=2.6,<3" "psutil>=5.9" "paho-mqtt>=2.0,<3" "pytest>=8" "hypothesis>=6.100"
"$venv/bin/python" -m pip install -q --no-deps -e .

"$venv/bin/python" - <<'EOF'
import importlib.metadata as md
for name in ("tflite-runtime", "numpy", "opencv-python-headless"):
    print(f"{name} {md.version(name)}")
EOF
CAMCLASSD_RUNTIME=tflite-runtime exec "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_engine.py tests/test_classify_cli.py tests/test_trained_runtime.py "$@"
