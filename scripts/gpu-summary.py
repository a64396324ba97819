#!/usr/bin/env python3
"""Summarize scripts/gpu-plan.sh's $OUT: per build, GH/s (each round and the mean), the card's
mean SM clock and power while it ran (from nvidia-smi.csv, matched by time), and GH/s per watt;
hashcat's speed beside them. Usage: python3 scripts/gpu-summary.py OUT_DIR

Reads only what the plan wrote; a missing nvidia-smi.csv (PoCL/lavapipe dry run) leaves the clock
and power columns as '-'. No third-party modules, so it runs on a bare GPU machine.
"""

import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path


def hashrate(line):
    """Hashes per second from one `bench --json` line: the per-device rates summed."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    records = record if isinstance(record, list) else [record]
    total = 0.0
    found = False
    for item in records:
        if not isinstance(item, dict):
            continue
        for key in ("hashrate", "hashes_per_second", "hash_rate"):
            if isinstance(item.get(key), (int, float)):
                total += float(item[key])
                found = True
                break
        else:
            if isinstance(item.get("ghs"), (int, float)):
                total += float(item["ghs"]) * 1e9
                found = True
    return total if found else None


def smi_samples(out):
    """(unix time, SM MHz, watts) per nvidia-smi sample, or [] without the file."""
    path = out / "nvidia-smi.csv"
    if not path.exists():
        return []
    samples = []
    for row in path.read_text(errors="replace").splitlines():
        cells = [c.strip() for c in row.split(",")]
        if len(cells) < 3:
            continue
        try:
            stamp = datetime.strptime(cells[0], "%Y/%m/%d %H:%M:%S.%f")
            when = stamp.replace(tzinfo=timezone.utc).timestamp()
            samples.append((when, float(cells[1]), float(cells[2])))
        except ValueError:
            continue
    return samples


def during(samples, start, end):
    """Mean SM clock and power over the middle of a section (its first 20% is kernel build)."""
    start += 0.2 * (end - start)
    inside = [(c, p) for t, c, p in samples if start <= t <= end]
    if not inside:
        return None, None
    return (sum(c for c, _ in inside) / len(inside), sum(p for _, p in inside) / len(inside))


def main():
    out = Path(sys.argv[1])
    samples = smi_samples(out)
    # nvidia-smi stamps local time; the GPU machine runs in UTC, as the plan's sections do.
    rows = {}
    hashcat = None
    for line in (out / "sections.tsv").read_text(errors="replace").splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 4:
            continue
        name, start, end, record = parts
        clock, watts = during(samples, float(start), float(end))
        if name == "hashcat":
            hashcat = (clock, watts)
            continue
        rows.setdefault(name, []).append((hashrate(record), clock, watts))
    print(f"{'build':<22}{'GH/s per round':<24}{'mean':>8}{'SM MHz':>8}{'W':>7}{'GH/s/W':>8}")
    for name, runs in rows.items():
        rates = [r for r, _, _ in runs if r is not None]
        clocks = [c for _, c, _ in runs if c is not None]
        watts = [w for _, _, w in runs if w is not None]
        mean = sum(rates) / len(rates) / 1e9 if rates else None
        clock = sum(clocks) / len(clocks) if clocks else None
        power = sum(watts) / len(watts) if watts else None
        per_round = " / ".join(f"{r / 1e9:.3f}" if r else "fail" for r, _, _ in runs)
        print(
            f"{name:<22}{per_round:<24}"
            + (f"{mean:>8.3f}" if mean is not None else f"{'fail':>8}")
            + (f"{clock:>8.0f}" if clock else f"{'-':>8}")
            + (f"{power:>7.0f}" if power else f"{'-':>7}")
            + (f"{mean / power:>8.4f}" if mean and power else f"{'-':>8}")
        )
    log = (out / "gpu-check.log").read_text(errors="replace")
    speed = re.search(r"^Speed\.#\S*\.*:\s*(.+)$", log, re.M)
    if speed:
        clock, watts = hashcat if hashcat else (None, None)
        extra = f" at {clock:.0f} MHz, {watts:.0f} W" if clock and watts else ""
        print(f"hashcat -m 1400: {speed.group(1).strip()}{extra}")


if __name__ == "__main__":
    main()
