#!/usr/bin/env bash
# Stratum V2's reference roles (SRI, pinned) for the Stratum V2 and farm
# tests: the pool (pool_sv2) and the translator proxy that V1 rigs mine
# behind (translator_sv2). Each is built once from the crate registry with
# its own lock file (`cargo install --locked`) into a cache outside the
# clone, and reused. They need Cap'n Proto (Debian's capnproto) to build.
# Prints the exports to eval:
#   eval "$(bash scripts/sv2-roles.sh)"   # HASHRIG_POOL_SV2, HASHRIG_TRANSLATOR_SV2
set -euo pipefail

cache=${HASHRIG_SV2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hashrig}

# build CRATE VERSION: the role's binary, built into the cache if missing.
build() {
  local crate=$1 version=$2
  local root=$cache/$crate-$version
  if [ ! -x "$root/bin/$crate" ]; then
    if ! command -v capnp >/dev/null 2>&1; then
      sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
      $sudo apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends capnproto libcapnp-dev >&2
    fi
    echo "building $crate $version (once; cached in $root)" >&2
    rm -rf "$root.tmp"
    cargo install --quiet --locked --version "$version" --root "$root.tmp" "$crate" >&2
    rm -rf "$root"
    mv "$root.tmp" "$root"
  fi
  echo "$root/bin/$crate"
}

pool=$(build pool_sv2 0.7.0)
translator=$(build translator_sv2 0.6.0)
echo "export HASHRIG_POOL_SV2=$pool"
echo "export HASHRIG_TRANSLATOR_SV2=$translator"
