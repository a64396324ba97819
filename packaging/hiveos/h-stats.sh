#!/usr/bin/env bash
# HiveOS's agent sources this and reads two variables: khs (the total in
# kH/s) and stats (JSON: hs, hs_units, temp, fan, uptime, ver, ar, algo,
# bus_numbers). Both come from hashrig's cgminer API on loopback. Run on
# its own, it prints them as one JSON object.
hashrig_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$hashrig_dir/h-manifest.conf"

# One request to the API; the reply without its NUL.
hashrig_api() {
  timeout "${API_TIMEOUT:-5}" bash -c \
    'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "%s" "$2" >&3 && tr -d "\000" <&3' \
    _ "$CUSTOM_API_PORT" "$1" 2>/dev/null
}

hashrig_reply=$(hashrig_api '{"command":"summary+devs+version"}')
khs=0
stats=null
if [[ -n $hashrig_reply ]] && jq -e '.summary[0].SUMMARY[0]' >/dev/null 2>&1 <<< "$hashrig_reply"; then
  khs=$(jq -r '.summary[0].SUMMARY[0]["MHS 5s"] * 1000' <<< "$hashrig_reply")
  stats=$(jq -c --arg algo "$CUSTOM_ALGO" '
    (.devs[0].DEVS // []) as $devs
    | (.summary[0].SUMMARY[0]) as $s
    | {
        hs: [$devs[] | .["MHS 5s"] * 1000],
        hs_units: "khs",
        temp: [$devs[] | .Temperature | round],
        fan: [$devs[] | .["Fan Percent"] | round],
        uptime: $s.Elapsed,
        ver: .version[0].VERSION[0].hashrig,
        ar: [$s.Accepted, $s.Rejected, $s["Hardware Errors"]],
        algo: $algo,
        bus_numbers: [$devs[] | .["PCI Bus"]
          | if test("^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:") then (.[5:7] | ascii_downcase | explode
              | map(if . >= 97 then . - 87 else . - 48 end) | .[0] * 16 + .[1])
            else null end]
      }' <<< "$hashrig_reply")
else
  echo "hashrig: no answer from the cgminer API on 127.0.0.1:$CUSTOM_API_PORT" >&2
fi

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  jq -nc --argjson khs "$khs" --argjson stats "$stats" '{khs: $khs, stats: $stats}'
fi
