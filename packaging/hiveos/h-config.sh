#!/usr/bin/env bash
# HiveOS calls this before every start, with the flight sheet in scope:
# CUSTOM_URL (one or more pool URLs, space separated: the failover list),
# CUSTOM_TEMPLATE (the user, e.g. WALLET.WORKER), CUSTOM_PASS and
# CUSTOM_USER_CONFIG (extra hashrig flags, given to h-run.sh). It writes
# hashrig's config file; `hashrig config check` is run on it so a bad
# flight sheet fails here, naming the bad value, not at mining time.
hashrig_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$hashrig_dir/h-manifest.conf"

# A TOML basic string: backslashes and double quotes escaped.
hashrig_toml() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

# Sourced by HiveOS (return) or run on its own (exit).
if [[ -z $CUSTOM_URL || -z $CUSTOM_TEMPLATE ]]; then
  echo "hashrig: the flight sheet needs a pool URL and a wallet/user template" >&2
  return 1 2>/dev/null || exit 1
fi

mkdir -p "$(dirname "$CUSTOM_CONFIG_FILENAME")" "$(dirname "$CUSTOM_LOG_BASENAME")"
{
  echo "# Written by h-config.sh from the flight sheet; edits are overwritten."
  echo "found_blocks = $(hashrig_toml "$hashrig_dir/found-blocks.jsonl")"
  echo "[cgminer_api]"
  echo "bind = \"127.0.0.1:$CUSTOM_API_PORT\""
  echo "allow = \"W:127.0.0.1/32\""
  # Split on whitespace only: an unquoted $CUSTOM_URL would also expand
  # globs (a URL "*:3333" would become the names of files in this folder).
  read -r -a hashrig_urls <<< "$CUSTOM_URL"
  for hashrig_url in "${hashrig_urls[@]}"; do
    # HiveOS pool lists may leave the scheme out.
    [[ $hashrig_url == *://* ]] || hashrig_url="stratum+tcp://$hashrig_url"
    echo "[[pool]]"
    echo "url = $(hashrig_toml "$hashrig_url")"
    echo "user = $(hashrig_toml "$CUSTOM_TEMPLATE")"
    echo "pass = $(hashrig_toml "${CUSTOM_PASS:-x}")"
  done
} > "$CUSTOM_CONFIG_FILENAME"

"$hashrig_dir/hashrig" config check "$CUSTOM_CONFIG_FILENAME" >/dev/null
