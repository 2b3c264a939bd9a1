#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Summary of bench/replication-floor's JSON (DIR): per figure the rounds
and their median, then the arithmetic of the replication issue's goals
    QD1:  weft p50 <= 1.15 x (device p50 + 2 x round trip p50)
    QD32: weft IOPS >= 0.8 x (device IOPS / 3)
against the floors measured in the same session."""
import glob
import json
import os
import statistics
import sys


def rounds(d, tag):
    out = []
    for p in sorted(glob.glob(os.path.join(d, tag + "-*.json")),
                    key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
        with open(p) as f:
            out.append(json.load(f))
    return out


def med(v):
    return statistics.median(v) if v else float("nan")


def line(name, vals, unit):
    print("| %s | %s | **%.1f** %s |" % (name, " ".join("%.1f" % v for v in vals),
                                        med(vals), unit))


def load(d, name):
    try:
        with open(os.path.join(d, "load-" + name)) as f:
            return f.read().strip()
    except OSError:
        return "?"


def header(d, n, what):
    """A session's title line, its load before and after, a table head."""
    print("Session %d (%s): load %s -> %s"
          % (n, what, load(d, "s%d-start" % n), load(d, "s%d-end" % n)))
    print()
    print("| figure | rounds | median |")
    print("|---|---|---|")


def main(d):
    dev = rounds(d, "s1-device")
    ch = rounds(d, "s1-chain")
    wq1 = rounds(d, "s1-weft")
    header(d, 1, "cache none, QD1 randwrite 4 KiB")
    dev_p50 = [x["p50_us"] for x in dev]
    line("device write p50 (weft-bench floor)", dev_p50, "us")
    line("device write p50 (weft-bench io's floor, before+after)",
         [x["floor"]["device_p50_us"] for x in wq1], "us")
    line("round trip p50, busy-polling fabric (weft-bench io's rtt)",
         [x["floor"]["rtt_p50_us"] for x in wq1], "us")
    pair = [x["pair"]["p50_us"] for x in ch]
    chain = [x["chain"]["p50_us"] for x in ch]
    line("round trip p50, 2 processes sleeping (chain --topology pair)", pair, "us")
    line("round trip p99, 2 processes sleeping", [x["pair"]["p99_us"] for x in ch], "us")
    line("chain p50, 4 processes sleeping (chain --topology chain)", chain, "us")
    line("chain p99, 4 processes sleeping", [x["chain"]["p99_us"] for x in ch], "us")
    line("pair: sleeps per round trip", [x["pair"]["voluntary_switches_per_rt"] for x in ch], "")
    line("chain: sleeps per round trip", [x["chain"]["voluntary_switches_per_rt"] for x in ch], "")
    line("pair: CPU per round trip (all processes)", [x["pair"]["cpu_us_per_rt"] for x in ch], "us")
    line("chain: CPU per round trip (all processes)", [x["chain"]["cpu_us_per_rt"] for x in ch], "us")
    wp50 = [x["p50_us"] for x in wq1]
    line("weft vol3 randwrite QD1 p50", wp50, "us")
    line("weft vol3 randwrite QD1 p99", [x["p99_us"] for x in wq1], "us")
    line("weft vol3 randwrite QD1 IOPS", [x["iops"] for x in wq1], "")
    line("weft targets' CPU per write", [x["target_cpu_us_per_io"] for x in wq1], "us")
    line("weft client's CPU per write", [x["client_cpu_us_per_io"] for x in wq1], "us")
    line("device floor's CPU per write", [x["cpu_us_per_io"] for x in dev], "us")
    D, P, C, W = med(dev_p50), med(pair), med(chain), med(wp50)
    R = med([x["floor"]["rtt_p50_us"] for x in wq1])
    print()
    print("QD1 goal, device p50 D = %.1f, sleeping round trip P = %.1f, chain C = %.1f,"
          " busy-polling rtt R = %.1f, weft W = %.1f (us):" % (D, P, C, R, W))
    print("  goal with the busy-polling rtt: 1.15 x (D + 2R) = %.1f; W / that = %.2f"
          % (1.15 * (D + 2 * R), W / (1.15 * (D + 2 * R))))
    g = 1.15 * (D + 2 * P)
    print("  goal with the sleeping round trip: 1.15 x (D + 2P) = %.1f; W / that = %.2f"
          % (g, W / g))
    print("  floor of the topology D + C = %.1f; %s the goal; W / (D + C) = %.2f,"
          " W - (D + C) = %.1f" % (D + C, "above" if D + C > g else "within",
                                   W / (D + C), W - (D + C)))
    cw = med([x["target_cpu_us_per_io"] + x["client_cpu_us_per_io"] for x in wq1])
    cf = med([x["chain"]["cpu_us_per_rt"] for x in ch]) + 3 * med([x["cpu_us_per_io"] for x in dev])
    print("  CPU per write, all processes: weft %.1f us against the chain's + 3 device"
          " writes' %.1f us (%.2fx)" % (cw, cf, cw / cf))
    print("  chain / pair = %.2f (2 round trips would be 2.00 if hops cost a round trip each)"
          % (C / P))

    ds = rounds(d, "s2-dsync")
    fio = rounds(d, "s2-fio")
    wq32 = rounds(d, "s2-weft")
    print()
    header(d, 2, "cache auto, QD32 randwrite 4 KiB")
    dsi = [x["iops"] for x in ds]
    line("device write IOPS, RWF_DSYNC (weft-bench floor --dsync)", dsi, "")
    if fio:
        line("device write IOPS, fio io_uring direct sync=dsync",
             [x["jobs"][0]["write"]["iops"] for x in fio], "")
    pli = [x["floor"]["device_iops"] for x in wq32]
    line("device write IOPS, plain O_DIRECT (weft-bench io's floor)", pli, "")
    wi = [x["iops"] for x in wq32]
    line("weft vol3 randwrite QD32 IOPS", wi, "")
    line("weft targets' CPU per write", [x["target_cpu_us_per_io"] for x in wq32], "us")
    DS, PL, WI = med(dsi), med(pli), med(wi)
    print()
    print("QD32 goal (weft / (device / 3) >= 0.8):")
    print("  against the plain floor: %.0f / (%.0f / 3) = %.2f" % (WI, PL, WI / (PL / 3)))
    print("  against the RWF_DSYNC floor: %.0f / (%.0f / 3) = %.2f" % (WI, DS, WI / (DS / 3)))
    if fio:
        FI = med([x["jobs"][0]["write"]["iops"] for x in fio])
        print("  against fio's dsync floor: %.0f / (%.0f / 3) = %.2f" % (WI, FI, WI / (FI / 3)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/weft-replication-floor")
