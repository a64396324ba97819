#!/usr/bin/env bash
# HiveOS starts the miner with this, in the miner's folder.
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
. ./h-manifest.conf
mkdir -p "$(dirname "$CUSTOM_LOG_BASENAME")"
# CUSTOM_USER_CONFIG holds extra flags (e.g. --device pci:0000:0a:00.0):
# split on whitespace as HiveOS miners do, but never expanded as globs.
read -r -a hashrig_flags <<< "${CUSTOM_USER_CONFIG:-}"
# The agent must see hashrig's own exit status, not tee's.
set -o pipefail
./hashrig mine --config "$CUSTOM_CONFIG_FILENAME" "${hashrig_flags[@]}" 2>&1 |
  tee --append "$CUSTOM_LOG_BASENAME.log"
