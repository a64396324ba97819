#!/usr/bin/env bash
# Farm tools the tests drive hashrig with, from PyPI, cached outside the
# clone: pyasic (the library farm dashboards and scripts poll miners with,
# through its cgminer RPC client), pinned. Prints the export to eval:
#   eval "$(bash scripts/farm-tools.sh)"   # sets HASHRIG_PYASIC_PATH
set -euo pipefail

version=0.79.0
target=${HASHRIG_FARM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hashrig/pyasic-$version}

if ! PYTHONPATH="$target" python3 -c 'import pyasic.rpc.cgminer' 2>/dev/null; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip >&2
  fi
  rm -rf "$target.tmp"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --root-user-action=ignore --target "$target.tmp" "pyasic==$version" >&2
  rm -rf "$target"
  mv "$target.tmp" "$target"
fi
echo "export HASHRIG_PYASIC_PATH=$target"
