#!/usr/bin/env bash
# Builds the farm OS packages: the tarballs HiveOS and mmpOS install as a
# custom miner, each `hashrig-<version>.tar.gz` holding a `hashrig/` folder
# (the binary and that system's scripts, version filled in).
#
#   bash scripts/package-farm.sh [--binary PATH] [--out DIR]
#
# Without --binary it builds the release binary first. Out: DIR/hiveos/
# and DIR/mmpos/ (default: target/farm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

binary="" out=target/farm
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "package-farm.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked
  binary=target/release/hashrig
fi
[ -x "$binary" ] || { echo "package-farm.sh: $binary is not an executable" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

for system in hiveos mmpos; do
  stage=$(mktemp -d)
  mkdir "$stage/hashrig"
  # Stripped: symbols are no use on a rig, and they are most of the size.
  install -s -m 0755 "$binary" "$stage/hashrig/hashrig"
  for file in packaging/"$system"/*; do
    mode=0644; [[ $file == *.sh ]] && mode=0755
    install -m "$mode" "$file" "$stage/hashrig/$(basename "$file")"
  done
  install -m 0644 README.md "$stage/hashrig/README.md"
  sed -i "s/@VERSION@/$version/" "$stage"/hashrig/*.conf
  mkdir -p "$out/$system"
  tar -C "$stage" --owner=0 --group=0 -czf "$out/$system/hashrig-$version.tar.gz" hashrig
  rm -rf "$stage"
  echo "$out/$system/hashrig-$version.tar.gz"
done
