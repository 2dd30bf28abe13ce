#!/usr/bin/env bash
# The test command: set up what is missing, then run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k mqtt -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
