#!/usr/bin/env bash
# The side-by-side measurements behind BENCHMARKS.md, in one run on one
# machine (this kind of machine is shared and noisy: compare ratios taken
# in the same run, never figures from different runs).
#
#   bash scripts/bench-compare.sh [SECONDS]
#
# Prints, for each pair, both figures and the ratio the issues ask for:
#   cpu     hashrig bench --backend cpu --cpu-threads 1   vs  half of
#           openssl's single-thread SHA-256 compression rate
#   opencl  hashrig bench --backend opencl  vs  hashcat -b -m 1400 (×1.78)
#   vulkan  hashrig bench --backend vulkan  vs  hashrig bench --backend opencl
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Mesa's window-system code complains without a runtime dir.
[ -d "${XDG_RUNTIME_DIR:-}" ] || { XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR; }
secs=${1:-20}
cargo build --release --quiet
bin=target/release/hashrig
rate() { "$bin" --quiet bench "$@" --seconds "$secs" --json | python3 -c 'import json,sys; print(sum(json.loads(l)["hashrate"] for l in sys.stdin))'; }
ratio() { python3 -c "print(f'{$1:.3f}')"; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u +%F)"

ossl=$(openssl speed -seconds "$secs" -bytes 16384 -evp sha256 2>/dev/null | awk '/^sha256/{print $2}' | tr -d k)
cpu=$(rate --backend cpu --cpu-threads 1)
compress=$(python3 -c "print($ossl*1000/64)")
echo "cpu:    hashrig $cpu H/s; openssl sha256 ${ossl}k B/s = $compress compressions/s; ratio to half: $(ratio "$cpu/($compress/2)")"

if command -v hashcat >/dev/null; then
  hashcat_rate() { HOME=$(mktemp -d) hashcat -b -m 1400 --force 2>/dev/null | awk '/^Speed/{v=$2; u=$3; m=(u=="kH/s")?1e3:(u=="MH/s")?1e6:(u=="GH/s")?1e9:1; print v*m; exit}'; }
  # Alternated twice, like the Vulkan pair below.
  hc=0; cl=0
  for _ in 1 2; do
    hc=$(python3 -c "print($hc + $(hashcat_rate))")
    cl=$(python3 -c "print($cl + $(rate --backend opencl))")
  done
  echo "opencl: hashrig $(python3 -c "print($cl/2)") H/s; hashcat -m 1400 $(python3 -c "print($hc/2)") H/s; parity ratio (x1.78): $(ratio "$cl*1.78/$hc")"
else
  echo "opencl: hashrig $(rate --backend opencl) H/s; hashcat not installed (apt-get install hashcat)"
fi

# Alternated three times: this machine's load drifts within a minute.
vk=0; cl=0
for _ in 1 2 3; do
  vk=$(python3 -c "print($vk + $(rate --backend vulkan))")
  cl=$(python3 -c "print($cl + $(rate --backend opencl))")
done
echo "vulkan: hashrig $(python3 -c "print($vk/3)") H/s; opencl (alternated) $(python3 -c "print($cl/3)") H/s; ratio: $(ratio "$vk/$cl")"
