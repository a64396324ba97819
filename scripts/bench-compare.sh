#!/usr/bin/env bash
# The side-by-side measurements behind BENCHMARKS.md, in one run on one
# machine (this kind of machine is shared and noisy: compare ratios taken
# in the same run, never figures from different runs).
#
#   bash scripts/bench-compare.sh [SECONDS] [SECTIONS]
#
# SECTIONS is any of cpu, opencl, vulkan (default: all three). Prints, for
# each pair, both figures and the ratio the issues ask for:
#   cpu     every CPU path on one thread, and half of openssl's
#           single-thread SHA-256 compression rate; then, alternated three
#           times, hashrig's CPU backend against cpuminer-opt's sha256d on
#           one thread and on all, and against hashrig's own OpenCL kernel
#           on PoCL (the same cores). cpuminer-opt is the yardstick, never a
#           dependency: build it by hand (JayDDee/cpuminer-opt, ./build.sh
#           under /tmp) and name it, per path it stands for:
#             HASHRIG_CPUMINER="avx512=/tmp/cpuminer-opt/cpuminer avx2=/tmp/cpuminer-avx2/cpuminer"
#           (a build for -march=haswell is its AVX2 path, for -march=znver3
#           its SHA-NI path); hashrig is then forced onto the same path.
#   opencl  hashrig bench --backend opencl  vs  hashcat -b -m 1400 (×1.78)
#   vulkan  hashrig bench --backend vulkan  vs  hashrig bench --backend opencl
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Mesa's window-system code complains without a runtime dir.
[ -d "${XDG_RUNTIME_DIR:-}" ] || { XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR; }
secs=${1:-20}
sections=${2:-cpu opencl vulkan}
want() { [[ " $sections " == *" $1 "* ]]; }
cargo build --release --quiet
bin=target/release/hashrig
rate() { "$bin" --quiet bench "$@" --seconds "$secs" --json | python3 -c 'import json,sys; print(sum(json.loads(l)["hashrate"] for l in sys.stdin))'; }
ratio() { python3 -c "print(f'{$1:.3f}')"; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u +%F)"

if want cpu; then
  ossl=$(openssl speed -seconds "$secs" -bytes 16384 -evp sha256 2>/dev/null | awk '/^sha256/{print $2}' | tr -d k)
  compress=$(python3 -c "print($ossl*1000/64)")
  echo "cpu:    openssl sha256 ${ossl}k B/s = $compress compressions/s; half: $(python3 -c "print($compress/2)") double hashes/s"
  paths=$("$bin" --quiet devices --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["driver"].removeprefix("paths ").replace(",", ""))')
  for path in $paths; do
    one=$(rate --backend cpu --cpu-threads 1 --cpu-path "$path")
    echo "cpu:    $path, 1 thread: $one H/s; ratio to half of openssl: $(ratio "$one/($compress/2)")"
  done
  # cpuminer-opt's own benchmark mode prints a total every few seconds:
  # the mean of all but the first (its warm-up).
  cpuminer_rate() { timeout "$((secs + 6))" "$1" -a sha256d --benchmark -t "$2" 2>&1 | python3 -c '
import re, sys
totals = [float(m.group(1)) * {"k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]
          for m in re.finditer(r"Total: ([0-9.]+) ([kMG])H/s", sys.stdin.read())]
print(sum(totals[1:]) / max(1, len(totals) - 1) if len(totals) > 1 else 0)'; }
  threads=$(nproc)
  for entry in ${HASHRIG_CPUMINER:-}; do
    path=${entry%%=*}; miner=${entry#*=}
    [ -x "$miner" ] || { echo "cpu:    $miner: not an executable (HASHRIG_CPUMINER)"; continue; }
    h1=0; c1=0; hn=0; cn=0
    for _ in 1 2 3; do
      h1=$(python3 -c "print($h1 + $(rate --backend cpu --cpu-threads 1 --cpu-path "$path"))")
      c1=$(python3 -c "print($c1 + $(cpuminer_rate "$miner" 1))")
      hn=$(python3 -c "print($hn + $(rate --backend cpu --cpu-threads "$threads" --cpu-path "$path"))")
      cn=$(python3 -c "print($cn + $(cpuminer_rate "$miner" "$threads"))")
    done
    echo "cpu:    $path vs cpuminer-opt ($miner), alternated: 1 thread $(python3 -c "print($h1/3)") vs $(python3 -c "print($c1/3)") H/s, ratio $(ratio "$h1/$c1"); $threads threads $(python3 -c "print($hn/3)") vs $(python3 -c "print($cn/3)") H/s, ratio $(ratio "$hn/$cn")"
  done
  [ -n "${HASHRIG_CPUMINER:-}" ] || echo "cpu:    cpuminer-opt not named (HASHRIG_CPUMINER): no comparison with it"
  cpu=0; pocl=0
  for _ in 1 2 3; do
    cpu=$(python3 -c "print($cpu + $(rate --backend cpu --cpu-threads "$threads"))")
    pocl=$(python3 -c "print($pocl + $(rate --backend opencl))")
  done
  echo "cpu:    all $threads threads, default path $(python3 -c "print($cpu/3)") H/s; hashrig's OpenCL kernel on PoCL $(python3 -c "print($pocl/3)") H/s (alternated); ratio: $(ratio "$cpu/$pocl")"
fi

if ! want opencl; then
  :
elif command -v hashcat >/dev/null; then
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

want vulkan || exit 0
# Alternated three times: this machine's load drifts within a minute.
vk=0; cl=0
for _ in 1 2 3; do
  vk=$(python3 -c "print($vk + $(rate --backend vulkan))")
  cl=$(python3 -c "print($cl + $(rate --backend opencl))")
done
echo "vulkan: hashrig $(python3 -c "print($vk/3)") H/s; opencl (alternated) $(python3 -c "print($cl/3)") H/s; ratio: $(ratio "$vk/$cl")"
