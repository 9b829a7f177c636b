#!/usr/bin/env bash
# Create the project's venv (.venv) with konduktor-slurm installed, on a fresh Debian 12 too.
# It is built from Debian's /usr/bin/python3 (not a pyenv or /root-local Python) so that the
# ordinary test user can run the same `konduktor` in live tests. Idempotent: re-installs only
# when pyproject.toml changed or the venv points at another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$venv/.installed"
python=/usr/bin/python3
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ -x "$venv/bin/konduktor" ] \
   && [ "$(readlink -f "$venv/bin/python")" = "$(readlink -f "$python")" ]; then
  exit 0
fi
if [ ! -x "$python" ] || ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "Installing python3 and python3-venv (Debian packages)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[dev]'
touch "$stamp"
