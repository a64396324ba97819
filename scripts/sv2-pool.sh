#!/usr/bin/env bash
# The Stratum V2 reference pool (SRI's pool_sv2, pinned) for the Stratum V2
# tests: built once from the crate registry with its own lock file
# (`cargo install --locked`) into a cache outside the clone, and reused.
# It needs Cap'n Proto (Debian's capnproto) to build.
# Prints the export to eval:
#   eval "$(bash scripts/sv2-pool.sh)"   # HASHRIG_POOL_SV2
set -euo pipefail

version=0.7.0
root=${HASHRIG_SV2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hashrig/pool_sv2-$version}

if [ ! -x "$root/bin/pool_sv2" ]; then
  if ! command -v capnp >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends capnproto libcapnp-dev >&2
  fi
  echo "building pool_sv2 $version (once; cached in $root)" >&2
  rm -rf "$root.tmp"
  cargo install --quiet --locked --version "$version" --root "$root.tmp" pool_sv2 >&2
  rm -rf "$root"
  mv "$root.tmp" "$root"
fi
echo "export HASHRIG_POOL_SV2=$root/bin/pool_sv2"
