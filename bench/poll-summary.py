#!/usr/bin/env python3
"""Tables of bench/poll-compare's run (medians over rounds)."""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1]
med = statistics.median
jobs = {}          # (kind, mode, rw) -> [run, ...]
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    kind, mode, _ = os.path.basename(path)[:-5].split("-")
    with open(path) as f:
        d = json.load(f)
    for r in d.get("runs", [d]):
        jobs.setdefault((kind, mode, r["rw"]), []).append(r)


def cores(r, key):
    return r[key] * r["iops"] / 1e6


def row(kind, mode, rw):
    rs = jobs.get((kind, mode, rw))
    if not rs:
        return None
    return {
        "n": len(rs),
        "iops": med(r["iops"] for r in rs),
        "p50": med(r["p50_us"] for r in rs),
        "p99": med(r["p99_us"] for r in rs),
        "ccpu": med(r["client_cpu_us_per_io"] for r in rs),
        "tcpu": med(r["target_cpu_us_per_io"] for r in rs),
        "ccores": med(cores(r, "client_cpu_us_per_io") for r in rs),
        "tcores": med(cores(r, "target_cpu_us_per_io") for r in rs),
        "total": med(cores(r, "client_cpu_us_per_io") +
                     cores(r, "target_cpu_us_per_io") for r in rs),
        "spins": med(r.get("spin", {}).get("spins_per_io", 0) for r in rs),
        "hits": med(r.get("spin", {}).get("hit_ratio", 0) for r in rs),
        "iops_all": " ".join("%.0f" % r["iops"] for r in rs),
        "p50_all": " ".join("%.0f" % r["p50_us"] for r in rs),
    }


def floors(rw):
    rs = [r for (k, m, w), v in jobs.items() if k == "qd1" and w == rw
          for r in v if r.get("floor", {}).get("device_p50_us")]
    return (med(r["floor"]["device_p50_us"] for r in rs),
            med(r["floor"]["rtt_p50_us"] for r in rs), len(rs))


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


print("load average (1, 5, 15 min): start %s, end %s" %
      (load("load-start"), load("load-end")))
print()
print("| job | mode | IOPS (rounds) | p50 us (rounds) | p99 us | client CPU "
      "us/IO | targets CPU us/IO | client cores | targets cores | total cores "
      "| spins/IO | spin hits |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for kind, rws in (("qd1", ("randread", "randwrite")),
                  ("qd32", ("randread", "randwrite")),
                  ("rep3", ("randwrite",))):
    for rw in rws:
        for mode in ("new", "old", "spin"):
            x = row(kind, mode, rw)
            if not x:
                continue
            name = {"qd1": "vol1 %s QD1", "qd32": "vol1 %s QD32",
                    "rep3": "vol3 %s QD1"}[kind] % rw
            print("| %s | %s | %.0f (%s) | %.1f (%s) | %.0f | %.1f | %.1f | "
                  "%.2f | %.2f | %.2f | %.2f | %.2f |" %
                  (name, mode, x["iops"], x["iops_all"], x["p50"],
                   x["p50_all"], x["p99"], x["ccpu"], x["tcpu"], x["ccores"],
                   x["tcores"], x["total"], x["spins"], x["hits"]))
print()
print("| rw | device p50 us | rtt p50 us | goal: p50 <= | new p50 | old p50 "
      "| spin p50 | new total cores | met |")
print("|---|---|---|---|---|---|---|---|---|")
for rw in ("randread", "randwrite"):
    dev, rtt, n = floors(rw)
    goal = dev + rtt + 10
    x = {m: row("qd1", m, rw) for m in ("new", "old", "spin")}
    if not x["new"]:
        continue
    ok = x["new"]["p50"] <= goal and x["new"]["total"] < 1.5
    print("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %s |" %
          (rw, dev, rtt, goal, x["new"]["p50"],
           x["old"]["p50"] if x["old"] else float("nan"),
           x["spin"]["p50"] if x["spin"] else float("nan"),
           x["new"]["total"], "yes" if ok else "no"))
