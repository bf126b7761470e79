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

With `pairs`, it compares the runs made at the same time instead,
`limits-pair-r<round>-<loop>-<off|on>.json`: the mean throughput and median p99 of each side,
and the lowest and highest of the rounds' on/off ratios.

usage: bench_compare.py <report folder> <loop: closed|open> [header | pairs [header]]
"""

import glob
import json
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


def pairs(folder, loop, header):
    rounds = []
    for off_path in sorted(glob.glob(os.path.join(folder, f"limits-pair-r*-{loop}-off.json"))):
        on_path = off_path[: -len("off.json")] + "on.json"
        if os.path.exists(on_path):
            rounds.append((json.load(open(off_path)), json.load(open(on_path))))
    if not rounds:
        return
    if header:
        print("| loop | rounds | throughput off → on (mean) | rounds' on/off | p99 off → on (median) "
              "| rounds' on/off | within 10 % | invariants |")
        print("|---|---|---|---|---|---|---|---|")
    t_off = statistics.mean(off["throughput"] for off, _ in rounds)
    t_on = statistics.mean(on["throughput"] for _, on in rounds)
    p_off = statistics.median(off["latency_ms"]["p99"] for off, _ in rounds)
    p_on = statistics.median(on["latency_ms"]["p99"] for _, on in rounds)
    t_ratios = [change(off["throughput"], on["throughput"]) for off, on in rounds]
    p_ratios = [change(off["latency_ms"]["p99"], on["latency_ms"]["p99"]) for off, on in rounds]
    t, p = change(t_off, t_on), change(p_off, p_on)
    within = "yes" if abs(t) <= 10.0 and p <= 10.0 else "no"
    held = all(c["held"] for pair in rounds for r in pair for c in r["invariants"])
    print(f"| {loop} | {len(rounds)} | {t_off:.0f} → {t_on:.0f} req/s, {t:+.1f} % "
          f"| {min(t_ratios):+.1f} … {max(t_ratios):+.1f} % "
          f"| {p_off:.2f} → {p_on:.2f} ms, {p:+.1f} % | {min(p_ratios):+.1f} … {max(p_ratios):+.1f} % "
          f"| {within} | {'all held' if held else '**BROKEN**'} |")


def main():
    folder, loop = sys.argv[1], sys.argv[2]
    if sys.argv[3:4] == ["pairs"]:
        pairs(folder, loop, sys.argv[4:] == ["header"])
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
