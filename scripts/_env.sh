# Sourced by main.sh and test.sh: set up, then point R and the tests at .venv and the data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export RETICULATE_PYTHON="$ROOT/.venv/bin/python"
export CMOT_DATA="${CMOT_DATA:-$ROOT/../shared/data}"
