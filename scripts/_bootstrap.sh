# Sourced by scripts/*: make .venv with the project installed (editable) and its test and vm
# extras (the VM tier's Python needs: virtme-ng, zstandard).
# Idempotent and quiet; re-installs only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.scsi-pr-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test,vm]" >&2
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
