#!/usr/bin/env bash
# Issue 28's run on a lent card, in one call of about 6 minutes. Staged by scripts/stage-gpu.sh as
# .devrun/gpu-check.sh (so the device command stays `bash .devrun/gpu-check.sh`, carry [".devrun"],
# timeout_s 420); it runs from .devrun/ on the GPU machine, writes everything under $OUT, and prints
# the summary last. Every step is bounded by `timeout`, so one hung driver cannot eat the budget.
#
# Order (correctness before speed; speed sections alternated so a clock drift shows as a spread):
#   1. drivers, nvidia-smi identity, `hashrig devices`
#   2. `scan` of the genesis window with every build: the exact nonce 2083236893 on the real card
#   3. every build 15 s, alternated twice: OpenCL generic / nvidia / nvidia-wide, Vulkan generic /
#      nvidia, with the SM clock and power (NVML via nvidia-smi, read-only) sampled during each
#   4. hashcat -b -m 1400 on the same card, same run (the yardstick)
#   5. `tune` (stores the winner in a tuning file), then `bench` with that file: the stored shape
#   6. the driver's PTX of each OpenCL build, from hashrig's program cache, for ptxas here
# Budget on an H200 (estimated from the 2026-11-28 run's start-up times): scans ~20 s, benches
# 10 x ~18 s, hashcat <= 60 s, tunes 2 x ~30 s (20 and 18 candidate shapes), tuned benches 2 x ~18 s: ~360 s of the 420.
# Locally (PoCL/lavapipe, no nvidia-smi) the same script dry-runs in about 3 minutes with
#   PLAN_SECONDS=3 PLAN_SCAN_COUNT=1000000 PLAN_TUNE_SECONDS=6 bash scripts/gpu-plan.sh
set -uo pipefail
# nvidia-smi stamps its samples in local time; gpu-summary.py reads them as UTC.
export TZ=UTC
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
bin=${HASHRIG:-./hashrig}
[ -x "$bin" ] || bin=$here/../target/release/hashrig
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
log="$OUT/gpu-check.log"; : > "$log"; : > "$OUT/bench.jsonl"; : > "$OUT/sections.tsv"
secs=${PLAN_SECONDS:-15}
rounds=${PLAN_ROUNDS:-2}
# Extra device flags for bench and tune (e.g. "--device 1" on a rig of several cards).
extra=${PLAN_DEVICE_FLAGS:-}
section() { printf '\n==== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >> "$log"; }
have_smi() { command -v nvidia-smi > /dev/null 2>&1; }

# Drivers: the bare GPU machine lacks the loaders; stage.sh brought them as .debs.
if [ -d debs ]; then
  for f in debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
  for j in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -f "$j" ] && { export VK_DRIVER_FILES=$j; break; }
  done
  egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
  lib=$(ldconfig -p | awk '/libnvidia-opencl\.so\.1/{print $NF; exit}')
  [ -n "$lib" ] || lib=$(find / -xdev -name 'libnvidia-opencl.so.1' 2>/dev/null | head -1)
  if [ -n "$lib" ]; then mkdir -p /etc/OpenCL/vendors; echo "$lib" > /etc/OpenCL/vendors/nvidia.icd; fi
  section "drivers"; echo "vulkan icd: ${VK_DRIVER_FILES:-none}; opencl icd: ${lib:-none}" >> "$log"
fi
# A private cache (outside $OUT: only the PTX extracted from it comes back), so the PTX is this
# run's and no stale tuning is read.
XDG_CACHE_HOME=$(mktemp -d); export XDG_CACHE_HOME
tuning=$OUT/tuning.toml

if have_smi; then
  section "nvidia-smi"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,power.limit --format=csv >> "$log" 2>&1
  # Read-only sampling, every 500 ms, for the whole run: matched to sections by time.
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader,nounits -lms 500 \
    > "$OUT/nvidia-smi.csv" 2>> "$log" &
  smi_pid=$!
fi
section "hashrig devices"
timeout 60 "$bin" devices --json >> "$log" 2>&1

builds=("opencl generic" "opencl nvidia" "opencl nvidia-wide" "vulkan generic" "vulkan nvidia")

# 2. Correctness: each build finds the genesis block's nonce in a 100M window around it.
genesis=0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c
summary=""
scan_count=${PLAN_SCAN_COUNT:-100000000}
for b in "${builds[@]}"; do
  set -- $b
  section "scan $1 $2"
  found=$(timeout 60 "$bin" scan --backend "$1" --kernel-variant "$2" --header "$genesis" \
    --start $((2083236893 - scan_count / 2)) --count "$scan_count" --json 2>> "$log" | tee -a "$log")
  if grep -q '"nonce": *2083236893' <<< "$found"; then verdict=found; else verdict="NOT FOUND"; fi
  summary+="scan $1 $2: genesis nonce $verdict"$'\n'
done

# 3. Every build, alternated: one JSON line per bench, and its start/end times for the clock match.
for round in $(seq "$rounds"); do
  for b in "${builds[@]}"; do
    set -- $b
    section "bench $1 $2 round $round"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    line=$(timeout $((secs + 45)) "$bin" bench --backend "$1" --kernel-variant "$2" $extra \
      --seconds "$secs" --json 2>> "$log" | tee -a "$log" | tail -1)
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\n' "$1 $2" "$t0" "$t1" "$line" >> "$OUT/sections.tsv"
    echo "$line" >> "$OUT/bench.jsonl"
  done
done

# 4. The yardstick on the same card, same run.
if command -v hashcat > /dev/null 2>&1; then
  section "hashcat -b -m 1400"
  t0=$(date +%s.%N)
  HOME=$(mktemp -d) timeout "${PLAN_HASHCAT_SECONDS:-60}" hashcat -b -m 1400 --force >> "$log" 2>&1
  printf '%s\t%s\t%s\t%s\n' "hashcat" "$t0" "$(date +%s.%N)" "{}" >> "$OUT/sections.tsv"
fi

# 5. tune stores each device's winner; bench with the same file must run that shape (its JSON
# line's "shape" and "tuned": true say so).
for b in opencl vulkan; do
  section "tune $b"
  # shellcheck disable=SC2086
  timeout 60 "$bin" tune --backend "$b" $extra --tuning-file "$tuning" --seconds "${PLAN_TUNE_SECONDS:-24}" >> "$log" 2>&1
done
cat "$tuning" >> "$log" 2>/dev/null
for b in opencl vulkan; do
  section "bench $b after tune"
  # shellcheck disable=SC2086
  timeout $((secs + 45)) "$bin" bench --backend "$b" $extra --tuning-file "$tuning" --seconds "$secs" --json \
    2>> "$log" | tee -a "$log" >> "$OUT/bench-tuned.jsonl"
done

[ -n "${smi_pid:-}" ] && kill "$smi_pid" 2>/dev/null

# 6. The driver's compiled OpenCL programs (on NVIDIA: PTX text), one per build, for ptxas here.
mkdir -p "$OUT/ptx"
for f in "$XDG_CACHE_HOME"/hashrig/opencl/*; do
  [ -f "$f" ] || continue
  python3 - "$f" "$OUT/ptx/$(basename "$f").ptx" <<'PY' 2>> "$log" || true
import sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"//")
if at >= 0 and b".entry" in data[at:]:
    open(sys.argv[2], "wb").write(data[at:].rstrip(b"\0"))
PY
done

echo "==== summary"
printf '%s' "$summary"
python3 "$here/gpu-summary.py" "$OUT" 2>&1 | tee "$OUT/summary.txt"
grep -E '^Speed|^\* Device #' "$log" | head -4
