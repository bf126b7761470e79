#!/usr/bin/env python3
"""Compares the two sides of an on/off stage of scripts/bench.sh (rate limits and token
revocation on vs off): the runs of one loop, `limits-r<round>-<side>-<a|b>-<loop>.json` in the
report folder, each round in the order off a, on a, on b, off b.

Prints a markdown table: per side the mean throughput (with its lowest and highest run), the
median p99, the mean CPU time per request of the servers (every process but the load generator,
from the `cpu.md` rows bench.sh wrote) and the same divided by the load generator's CPU per
request in the same run; the change from off to on; and the same comparison between the first
and the last "off" run of each round (both off: what this box's drift and noise alone make of
two identical gateways, i.e. the smallest difference the stage can tell apart).

Why the ratio: on a shared machine every process's CPU time per request swells and shrinks
together as the host gets busier (the load generator's by up to 2.5 times within minutes), and
the load generator does the same work per request on both sides, so servers ÷ generator cancels
the machine's speed of the moment and keeps what the servers do.

With `pairs <off URL>`, it compares the runs that loaded both gateways at once, the arrivals
alternating between them, `limits-pair-r<round>-<loop>.json` (each with a lane per gateway,
told apart by URL): the mean throughput of each side, the p99 and p99.9 of each side's latency
histograms pooled over the rounds, the median and range of the rounds' own p99 changes, and
the pooled change for the rounds each side had the even arrivals, and each gateway's CPU time
per request (`alternating-cpu.md`, from /proc). With `same <URL>`, the same
for `limits-same-r<round>-<loop>.json`, two gateways that are both on: the noise floor. With
`versus <URL>`, `versus-r<round>-<loop>.json`: another build's gateway at URL against this one.

usage: bench_compare.py <report folder> <loop: closed|open> [header | pairs|same|versus <URL> [header]]
"""

import glob
import json
import math
import os
import statistics
import sys


def runs(folder, loop, side, half="*"):
    paths = sorted(glob.glob(os.path.join(folder, f"limits-r*-{side}-{half}-{loop}.json")))
    return [(os.path.basename(p)[: -len(".json")], json.load(open(p))) for p in paths]


def cpu_per_request(folder):
    """Run name -> (µs of CPU per request of the servers, the same ÷ the load generator's)."""
    totals = {}
    path = os.path.join(folder, "cpu.md")
    if not os.path.exists(path):
        return totals
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("limits-"):
            continue
        try:
            numbers = [float(c) for c in cells[2:]]
        except ValueError:
            continue
        servers, generator = sum(numbers[:-1]), numbers[-1]
        totals[cells[0]] = (servers, servers / generator if generator else None)
    return totals


def change(before, after):
    return 100.0 * (after - before) / before if before else 0.0


def side_facts(named, cpu):
    throughput = [r["throughput"] for _, r in named]
    p99 = [r["latency_ms"]["p99"] for _, r in named]
    cpu_us = [cpu[name][0] for name, _ in named if name in cpu]
    ratio = [cpu[name][1] for name, _ in named if name in cpu and cpu[name][1]]
    held = all(c["held"] for _, r in named for c in r["invariants"])
    return {
        "n": len(named),
        "throughput": statistics.mean(throughput),
        "low": min(throughput),
        "high": max(throughput),
        "p99": statistics.median(p99),
        "cpu": statistics.mean(cpu_us) if cpu_us else None,
        "ratio": statistics.mean(ratio) if ratio else None,
        "held": held,
    }


def row(label, base, other):
    t = change(base["throughput"], other["throughput"])
    p = change(base["p99"], other["p99"])
    cpu = (
        f"{base['cpu']:.0f} → {other['cpu']:.0f} µs ({change(base['cpu'], other['cpu']):+.1f} %)"
        if base["cpu"] is not None and other["cpu"] is not None
        else "—"
    )
    ratio = (
        f"{base['ratio']:.2f} → {other['ratio']:.2f} ({change(base['ratio'], other['ratio']):+.1f} %)"
        if base["ratio"] and other["ratio"]
        else "—"
    )
    within = "yes" if abs(t) <= 10.0 and p <= 10.0 else "no"
    held = "all held" if base["held"] and other["held"] else "**BROKEN**"
    return (
        f"| {label} | {base['n']} + {other['n']} "
        f"| {base['throughput']:.0f} ({base['low']:.0f}–{base['high']:.0f}) → "
        f"{other['throughput']:.0f} ({other['low']:.0f}–{other['high']:.0f}) req/s, {t:+.1f} % "
        f"| {base['p99']:.2f} → {other['p99']:.2f} ms, {p:+.1f} % | {cpu} | {ratio} | {within} "
        f"| {held} |"
    )


def pooled(histograms, quantile):
    """The value at `quantile` of the histograms added up (`[µs, count]` rows), in ms."""
    counts = {}
    for histogram in histograms:
        for value, count in histogram:
            counts[value] = counts.get(value, 0) + count
    total = sum(counts.values())
    if not total:
        return 0.0
    wanted, seen = max(1, math.ceil(quantile * total)), 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= wanted:
            return value / 1000.0
    return max(counts) / 1000.0


def gateway_cpu(folder, kind, loop, first_url):
    """Mean CPU µs per request of the gateway at `first_url` and of the other one over the
    `<kind>` runs of `loop`, from the rows bench.sh wrote to `alternating-cpu.md`."""
    path = os.path.join(folder, "alternating-cpu.md")
    if not os.path.exists(path):  # reports of session 10 named it so
        path = os.path.join(folder, "limits-pairs-cpu.md")
    if not os.path.exists(path):
        return None
    first, other = [], []
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith(f"{kind}-r"):
            continue
        if not cells[0].endswith(f"-{loop}"):
            continue
        (first if cells[1] == first_url else other).append(float(cells[3]))
    if not first or not other:
        return None
    return statistics.mean(first), statistics.mean(other)


def pairs(folder, loop, kind, first_url, header):
    """Runs of both gateways in alternation (`--twin`), `<kind>-r<round>-<loop>.json`:
    the side at `first_url` against the other, each round's lanes matched by their target."""
    rounds = []
    for path in sorted(glob.glob(os.path.join(folder, f"{kind}-r*-{loop}.json"))):
        report = json.load(open(path))
        lanes = {lane["target"]: lane for lane in report.get("lanes", [])}
        first = lanes.pop(first_url, None)
        if first is None or len(lanes) != 1:
            continue
        other = next(iter(lanes.values()))
        # Which side had the even arrivals (the --target) this round.
        rounds.append((first, other, report["target"] == first_url, report))
    if header:
        print("| comparison | loop | rounds | throughput (mean) | p99, pooled | p99.9, pooled "
              "| rounds' p99 change: median (lowest … highest) | p99 change, each side leading "
              "| gateway CPU per request (mean) | within 10 % | invariants |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    names = {
        "limits-pair": ("off → on", "off", "on"),
        "limits-same": ("on → on (noise)", "A", "B"),
        "versus": ("other build → this one", "other", "this"),
    }[kind]
    if not rounds:
        print(f"| {names[0]} | {loop} | no runs | | | | | | | | |")
        return
    t_a = statistics.mean(a["throughput"] for a, _, _, _ in rounds)
    t_b = statistics.mean(b["throughput"] for _, b, _, _ in rounds)
    tails = {}
    for q in (0.99, 0.999):
        a = pooled([a["latency_histogram_us"] for a, _, _, _ in rounds], q)
        b = pooled([b["latency_histogram_us"] for _, b, _, _ in rounds], q)
        tails[q] = (a, b)
    p99s = [change(a["latency_ms"]["p99"], b["latency_ms"]["p99"]) for a, b, _, _ in rounds]

    def leading(first_leads):
        picked = [(a, b) for a, b, lead, _ in rounds if lead == first_leads]
        if not picked:
            return "—"
        a = pooled([a["latency_histogram_us"] for a, _ in picked], 0.99)
        b = pooled([b["latency_histogram_us"] for _, b in picked], 0.99)
        return f"{change(a, b):+.1f} %"

    cpu = gateway_cpu(folder, kind, loop, first_url)
    cpu_cell = (
        f"{cpu[0]:.1f} → {cpu[1]:.1f} µs, {change(*cpu):+.1f} %" if cpu else "—"
    )
    t, p = change(t_a, t_b), change(*tails[0.99])
    within = "yes" if abs(t) <= 10.0 and p <= 10.0 else "no"
    held = all(c["held"] for *_, r in rounds for c in r["invariants"])
    print(f"| {names[0]} | {loop} | {len(rounds)} | {t_a:.0f} → {t_b:.0f} req/s, {t:+.1f} % "
          f"| {tails[0.99][0]:.2f} → {tails[0.99][1]:.2f} ms, {p:+.1f} % "
          f"| {tails[0.999][0]:.2f} → {tails[0.999][1]:.2f} ms, "
          f"{change(*tails[0.999]):+.1f} % "
          f"| {statistics.median(p99s):+.1f} % ({min(p99s):+.1f} … {max(p99s):+.1f}) "
          f"| {names[1]} leading {leading(True)}, {names[2]} leading {leading(False)} "
          f"| {cpu_cell} | {within} | {'all held' if held else '**BROKEN**'} |")


def main():
    folder, loop = sys.argv[1], sys.argv[2]
    kinds = {"pairs": "limits-pair", "same": "limits-same", "versus": "versus"}
    if sys.argv[3:4] and sys.argv[3] in kinds:
        pairs(folder, loop, kinds[sys.argv[3]], sys.argv[4], sys.argv[5:] == ["header"])
        return
    if len(sys.argv) > 3:
        print("| loop, comparison | runs | throughput: mean (lowest–highest) | p99: median "
              "| servers' CPU per request | the same ÷ load generator's | within 10 % "
              "| invariants |")
        print("|---|---|---|---|---|---|---|---|")
    cpu = cpu_per_request(folder)
    off, on = runs(folder, loop, "off"), runs(folder, loop, "on")
    if not off or not on:
        print(f"| {loop} | no runs | | | | | | |")
        return
    print(row(f"{loop}: off → on", side_facts(off, cpu), side_facts(on, cpu)))
    first, last = runs(folder, loop, "off", "a"), runs(folder, loop, "off", "b")
    if first and last:
        print(row(f"{loop}: off → off (noise)", side_facts(first, cpu), side_facts(last, cpu)))


if __name__ == "__main__":
    main()
