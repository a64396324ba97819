#!/usr/bin/env python3
"""Peak memory of `hashrig solo` against the largest honest template the
BSV regtest node builds under hashrig's 64 MiB answer cap: the mempool is
filled with transactions carrying 990 kB OP_RETURN outputs (a pre-Genesis transaction is at most 1 MB) (about 31 MB of
transactions, a 62 MB hex answer), then each binary given mines on it for
10 s; its peak RSS is VmHWM, sampled from /proc every 20 ms (not wait4's
ru_maxrss, which a vfork'd child inherits from its parent).

    eval "$(bash scripts/regtest-nodes.sh start)"
    python3 scripts/solo-memory.py target/release/hashrig [OTHER_BINARY …]
    bash scripts/regtest-nodes.sh stop "$HASHRIG_REGTEST_DIR"
"""
import base64, json, os, subprocess, sys, tempfile, time, urllib.request

RPC = os.environ["HASHRIG_REGTEST_RPC"]
AUTH = base64.b64encode(
    f'{os.environ["HASHRIG_REGTEST_USER"]}:{os.environ["HASHRIG_REGTEST_PASS"]}'.encode()
).decode()
TX_DATA = 990_000
TXS = int(os.environ.get("SOLO_MEMORY_TXS", "31"))


def rpc(method, *params):
    body = json.dumps({"id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(RPC, body, {"Authorization": "Basic " + AUTH})
    try:
        with urllib.request.urlopen(request, timeout=600) as answer:
            reply = json.load(answer)
    except urllib.error.HTTPError as e:  # the node answers errors with 500
        reply = json.load(e)
    if reply.get("error"):
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def fill_mempool():
    address = rpc("getnewaddress")
    rpc("generatetoaddress", TXS + 101, address)
    coins = [u for u in rpc("listunspent", 1) if u["amount"] >= 1][:TXS]
    for i, coin in enumerate(coins):
        data = bytes([i % 256]) * TX_DATA
        raw = rpc(
            "createrawtransaction",
            [{"txid": coin["txid"], "vout": coin["vout"]}],
            {"data": data.hex(), address: round(float(coin["amount"]) - 0.1, 8)},
        )
        signed = rpc("signrawtransaction", raw)
        rpc("sendrawtransaction", signed["hex"])
    template = rpc("getblocktemplate")
    size = sum(len(t["data"]) // 2 for t in template["transactions"])
    return len(template["transactions"]), size, address


def peak_rss(binary, address):
    home = tempfile.mkdtemp()
    command = [binary, "solo", "--rpc-url", RPC,
               "--rpc-user", os.environ["HASHRIG_REGTEST_USER"],
               "--rpc-pass", os.environ["HASHRIG_REGTEST_PASS"],
               "--address", address, "--backend", "cpu", "--cpu-threads", "1",
               "--duration", "20", "--json", "--found-blocks", os.path.join(home, "found.jsonl")]
    env = dict(os.environ, XDG_CONFIG_HOME=home, XDG_DATA_HOME=home, HASHRIG_CACHE_DIR=home)
    # Files, not pipes: a pipe nobody reads fills and stops the miner.
    out_file = open(os.path.join(home, "stdout"), "w+")
    err_file = open(os.path.join(home, "stderr"), "w+")
    child = subprocess.Popen(command, env=env, stdout=out_file, stderr=err_file)
    peak = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    out_file.seek(0)
    err_file.seek(0)
    return child.returncode, peak, out_file.read(), err_file.read()


def main():
    # Each binary mines (and on regtest, finds) a block of the full
    # mempool: it is filled again for each.
    for binary in sys.argv[1:]:
        count, size, address = fill_mempool()
        print(f"template: {count} transactions, {size / 1e6:.1f} MB ({2 * size / 1e6:.1f} MB as hex)")
        code, peak, out, err = peak_rss(binary, address)
        mined = json.loads(out.strip().splitlines()[-1]).get("hashrate") if code == 0 and out else None
        blocks = err.count("BLOCK at height")
        print(f"{binary}: exit {code}, peak RSS {peak / 1024:.1f} MiB, {blocks} blocks found and submitted")
        if code != 0 or os.environ.get("SOLO_MEMORY_LOG"):
            print(err[-3000:])


main()
