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

# The status page's browser test drives Debian's chromium (never a downloaded browser).
# Install it when missing and this is Debian-like and root; otherwise say so once and go
# on: the test then skips locally and fails in CI (CI set) with the reason.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "==> /usr/bin/chromium missing and apt-get not usable as root: the browser test cannot run" >&2
    return 0
  fi
  echo "==> installing chromium (apt-get) for the status page test"
  local log="$VENV/apt-chromium.log"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core; } \
       >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    echo "==> installing chromium failed (log: $log): the browser test cannot run" >&2
  fi
  return 0
}
