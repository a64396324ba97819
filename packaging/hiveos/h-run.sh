#!/usr/bin/env bash
# HiveOS starts the miner with this, in the miner's folder.
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
. ./h-manifest.conf
mkdir -p "$(dirname "$CUSTOM_LOG_BASENAME")"
# CUSTOM_USER_CONFIG holds extra flags (e.g. --device pci:0000:0a:00.0):
# split on spaces as HiveOS miners do.
# shellcheck disable=SC2086
./hashrig mine --config "$CUSTOM_CONFIG_FILENAME" $CUSTOM_USER_CONFIG 2>&1 |
  tee --append "$CUSTOM_LOG_BASENAME.log"
