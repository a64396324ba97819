#!/usr/bin/env bash
# mmpOS's agent runs this as `mmp-stats.sh GPU_COUNT LOG_FILE` and reads one
# JSON line: busid, hash, units, air (accepted, invalid, rejected),
# miner_name, miner_version, from hashrig's cgminer API on loopback.
hashrig_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$hashrig_dir/mmp-external.conf"

hashrig_reply=$(timeout "${API_TIMEOUT:-5}" bash -c \
  'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "%s" "$2" >&3 && tr -d "\000" <&3' \
  _ "$EXTERNAL_API_PORT" '{"command":"summary+devs"}' 2>/dev/null)

if [[ -z $hashrig_reply ]] || ! jq -e '.summary[0].SUMMARY[0]' >/dev/null 2>&1 <<< "$hashrig_reply"; then
  echo "hashrig: no answer from the cgminer API on 127.0.0.1:$EXTERNAL_API_PORT" >&2
  exit 1
fi
jq -c --arg name "$EXTERNAL_NAME" --arg version "$EXTERNAL_VERSION" '
  (.devs[0].DEVS // []) as $devs
  | (.summary[0].SUMMARY[0]) as $s
  | {
      busid: [$devs[] | if .["PCI Bus"] == "" then "cpu" else .["PCI Bus"] end],
      hash: [$devs[] | .["MHS 5s"] * 1000],
      units: "khs",
      air: [$s.Accepted, $s["Hardware Errors"], $s.Rejected],
      miner_name: $name,
      miner_version: $version
    }' <<< "$hashrig_reply"
