#!/usr/bin/env bash
# The soak behind BENCHMARKS.md's memory figure (not in CI): the chaos test
# (tests/integration/chaos.rs) run for an hour instead of a minute. The
# real `hashrig mine` binary mines against a hostile loopback pool that
# sets difficulty 1e-9, never answers a submit, sends junk between valid
# messages and one 4 MiB line; the test reads the process's peak resident
# memory (VmHWM) from outside and checks every bound again.
#
#   bash scripts/soak.sh [SECONDS]      # default 3600
#
# Prints the test's "chaos:" line: run length, exit time, peak RSS,
# submissions and their rate, connections.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-3600}
echo "soak: ${secs} s, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
HASHRIG_CHAOS_SECONDS=$secs cargo test --locked --test integration chaos:: -- --nocapture 2>&1 \
  | grep -E '^chaos:|test result|panicked|assert'
