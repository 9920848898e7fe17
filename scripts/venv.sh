#!/usr/bin/env bash
# Makes, or reuses, a Python venv holding exactly the pinned packages of a requirements file:
# a venv whose recorded requirements hash differs is rebuilt from scratch.
#
#   scripts/venv.sh VENV_DIR REQUIREMENTS_FILE
set -euo pipefail
venv=$1
req=$2
stamp=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$stamp" > "$venv/.requirements.sha256"
fi
