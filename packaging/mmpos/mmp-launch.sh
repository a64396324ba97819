#!/usr/bin/env bash
# mmpOS starts the miner with this and the profile's miner arguments, which
# are hashrig mine's flags (--pool URL --user WALLET.WORKER [--pass X]
# [--device …]); the cgminer API that mmp-stats.sh reads is added here.
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
. ./mmp-external.conf
exec ./hashrig mine --cgminer-api "127.0.0.1:$EXTERNAL_API_PORT" \
  --cgminer-api-allow W:127.0.0.1/32 --found-blocks ./found-blocks.jsonl "$@"
