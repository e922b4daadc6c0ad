#!/usr/bin/env python3
"""Ratios to a peer (Knot by default) from peers.sh's results.tsv.

Usage: report.py RESULTS.tsv [--skip N] [--kind auth|cache] [--base knot] [--target 1.5]

bench/auth.sh:  --kind auth --base knot --target 0.7, then --base best (issue #8's targets)
bench/cache.sh: --kind cache --base unbound --target 0.7, then --base best

--skip N ignores the first N lines of the file (the header is always line 1), so that
bench/auth.sh reports only the rows of its own invocation. Medians over the reps of each
server; [min-max] is given for CPU us/query, the stable metric on a shared machine.
`--base best` takes the peer with the lowest CPU per query in the run.
Ratios are server / base: for us/q and RSS lower is better, for qps higher is better.
A server named "floor" (bench/floor.c, no DNS work at all) is never the base; its line says
what share of the base's CPU per query the kernel alone takes.
--target X prints, for every server whose name starts with "oxidns", whether its CPU us/query
is at most X times the base's. For cache rows RSS is taken after the warm-up.
"""
import argparse
import csv
import statistics
import sys

ap = argparse.ArgumentParser()
ap.add_argument("results")
ap.add_argument("--skip", type=int, default=1)
ap.add_argument("--kind", default="auth")
ap.add_argument("--base", default="knot")
ap.add_argument("--target", type=float, default=1.5)
a = ap.parse_args()

with open(a.results) as f:
    lines = f.read().splitlines()
header = lines[0].split("\t")
body = lines[max(a.skip, 1):]
rows = [dict(zip(header, l.split("\t"))) for l in body if l and not l.startswith("date\t")]
rows = [r for r in rows if r.get("kind") == a.kind]
if not rows:
    sys.exit(f"no {a.kind} rows after line {a.skip} of {a.results}")

by = {}
for r in rows:
    by.setdefault(r["server"], []).append(r)

def med(rs, k):
    return statistics.median(float(r[k]) for r in rs)

stats = {}
for s, rs in by.items():
    us = [float(r["cpu_us_per_q"]) for r in rs]
    stats[s] = dict(
        n=len(rs), us=med(rs, "cpu_us_per_q"), us_min=min(us), us_max=max(us),
        qps=med(rs, "qps"), avg=med(rs, "avg_ms"), lost=med(rs, "lost_pct"),
        rss=int(rs[-1]["rss_load_kb"]) / 1024, hwm=int(rs[-1]["hwm_kb"]) / 1024,
        pss=int(rs[-1]["pss_kb"]) / 1024, resp=rs[-1]["resp_bytes"], load=med(rs, "load1"),
    )

if a.base == "best":
    # The peer with the lowest CPU per query in this run.
    peers = [s for s in stats if not s.startswith("oxidns") and s != "floor"]
    a.base = min(peers, key=lambda s: stats[s]["us"]) if peers else "-"
base = stats.get(a.base)
def ratio(s, k):
    if not base or not base[k]:
        return "   -"
    return f"{stats[s][k] / base[k]:5.2f}x"

print(f"== {a.kind}: medians over reps, ratios to {a.base} ({len(rows)} rows, {rows[0]['date']} .. {rows[-1]['date']})")
print(f"{'server':14} {'n':>2} {'us/q':>6} {'[min-max]':>13} {'qps':>8} {'avg_ms':>7} {'lost%':>6} "
      f"{'RSS_MB':>7} {'HWM_MB':>7} {'PSS_MB':>7} {'resp_B':>6} {'load1':>5} | {'us/q ratio':>10} {'qps ratio':>9} {'RSS ratio':>9}")
for s, t in stats.items():
    rng = f"[{t['us_min']:.1f}-{t['us_max']:.1f}]"
    print(f"{s:14} {t['n']:2d} {t['us']:6.1f} {rng:>13} {t['qps']:8.0f} {t['avg']:7.3f} {t['lost']:6.2f} "
          f"{t['rss']:7.1f} {t['hwm']:7.1f} {t['pss']:7.1f} {t['resp']:>6} {t['load']:5.2f} | "
          f"{ratio(s, 'us'):>10} {ratio(s, 'qps'):>9} {ratio(s, 'rss'):>9}")
for s in stats:
    if not (base and s.startswith("oxidns")):
        continue
    r = stats[s]["us"] / base["us"]
    verdict = "meets" if r <= a.target else f"misses (by {r / a.target:.2f}x)"
    print(f"target: {s} CPU us/query <= {a.target:g}x {a.base}: {r:.2f}x -> {verdict}")
floor = stats.get("floor")
if base and floor:
    print(f"floor: the kernel's share of a query (bench/floor.c) is {floor['us']:.2f} us/q = "
          f"{floor['us'] / base['us']:.2f}x {a.base}; {a.target:g}x {a.base} leaves "
          f"{a.target * base['us'] - floor['us']:+.2f} us/q for all the work above the socket")
