# Sourced by scripts/*: create .venv with Python >= 3.11 when missing and install the project.
# Usage: ensure_venv [extra]   (extra: "test" installs .[test])
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python() {
  for p in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$p" ] || continue
    if command -v "$p" >/dev/null 2>&1 &&
       "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local extra="${1:-}" spec="$ROOT" stamp
  [ -n "$extra" ] && spec="$ROOT[$extra]"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$(find_python)" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-${extra:-base}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> installing nats-heartbeat${extra:+[$extra]} into .venv"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    if ! "$VENV/bin/python" -m pip install --quiet -e "$spec" >"$VENV/install.log" 2>&1; then
      cat "$VENV/install.log" >&2
      echo "error: installing nats-heartbeat failed (log above, also in $VENV/install.log)" >&2
      return 1
    fi
    touch "$stamp"
  fi
}
