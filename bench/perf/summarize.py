# Summarize the JSON of bench/perf/run into the markdown tables of
# docs/performance.md: medians over seeds, fio and the nbdkit peer.
import json, sys, glob, statistics as st, os
out = sys.argv[1]
def runs(path):
    d = json.load(open(path))
    return d["runs"] if "runs" in d else [d]
def med(xs): return st.median(xs)
def fiojson(path):
    t = open(path).read()
    return json.loads(t[t.index("{"):])
def table(prefix, sc=False):
    cells = {}
    for f in sorted(glob.glob(os.path.join(out, prefix + "-*.json"))):
        for r in runs(f):
            cells.setdefault((r["rw"], r["qd"]), []).append(r)
    print("| rw | QD | IOPS | p50 us | p99 us | p99.9 us | target CPU us/IO | client CPU us/IO | device IOPS | device p50 us | ratio (IOPS/device) | p50 / device p50 | rtt p50 us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    res = {}
    for (rw, qd), rs in sorted(cells.items()):
        m = lambda k: med([r[k] for r in rs])
        mf = lambda k: med([r["floor"][k] for r in rs])
        res[(rw, qd)] = dict(iops=m("iops"), p50=m("p50_us"), ratio=m("ratio_to_floor"),
                             p50r=m("p50_ratio_to_floor"), tcpu=m("target_cpu_us_per_io"))
        print(f"| {rw} | {qd} | {m('iops'):,.0f} | {m('p50_us'):.1f} | {m('p99_us'):,.0f} | {m('p999_us'):,.0f} | "
              f"{m('target_cpu_us_per_io'):.1f} | {m('client_cpu_us_per_io'):.1f} | {mf('device_iops'):,.0f} | "
              f"{mf('device_p50_us'):.1f} | {m('ratio_to_floor'):.2f}x | {m('p50_ratio_to_floor'):.2f}x | {mf('rtt_p50_us'):.1f} |")
    return res
print("load:", open(os.path.join(out, "uptime-start")).read().strip(), "/", open(os.path.join(out, "uptime-end")).read().strip())
print("\n### network (median of 3)\n"); net = table("net")
print("\n### short-circuit (median of 3)\n"); sc = table("sc")
if glob.glob(os.path.join(out, "spin-*.json")):
    print("\n### QD1, client busy-polling (WEFT_SPIN_US=1000000; median of 3)\n"); spin = table("spin")
if glob.glob(os.path.join(out, "one-*.json")):
    print("\n### one target (conf/single.conf; median of 3)\n"); one = table("one")
if glob.glob(os.path.join(out, "layout-*.json")):
    print("\n### device with the cluster's layout (fio io_uring, 3 files x QD11, one job each)\n")
    print("| rw | IOPS | p50 us |\n|---|---|---|")
    for f in sorted(glob.glob(os.path.join(out, "layout-*.json"))):
        rw = os.path.basename(f)[7:-5]
        try:
            d = fiojson(f)["jobs"][0]["read" if "read" in rw else "write"]
            print(f"| {rw} | {d['iops']:,.0f} | {d['clat_ns']['percentile']['50.000000']/1000:.1f} |")
        except Exception as e:
            print("bad", f, e)
print("\n### fio engine\n")
print("| rw | QD | IOPS | p50 us | p99 us |\n|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(out, "fio-*.json"))):
    try:
        j = fiojson(f)["jobs"][0]
    except Exception as e:
        print("bad", f, e); continue
    rw, qd = os.path.basename(f)[4:-5].rsplit("-", 1)
    d = j["read"] if "read" in rw else j["write"]
    pct = d["clat_ns"].get("percentile", {}) if "lat_ns" not in d or not d["lat_ns"].get("percentile") else d["lat_ns"]["percentile"]
    print(f"| {rw} | {qd} | {d['iops']:,.0f} | {pct.get('50.000000',0)/1000:.1f} | {pct.get('99.000000',0)/1000:,.0f} |")
print("\n### peer (nbdkit file plugin, fio nbd engine), both reps\n")
print("| rw | QD | weft IOPS | weft p50 us | nbdkit IOPS | nbdkit p50 us |\n|---|---|---|---|---|---|")
pw = {}
for f in sorted(glob.glob(os.path.join(out, "peerweft-*.json"))):
    for r in runs(f):
        pw.setdefault((r["rw"], r["qd"]), []).append(r)
for (rw, qd), rs in sorted(pw.items()):
    nb = []
    for rep in (1, 2):
        try:
            j = fiojson(os.path.join(out, f"nbd-{rw}-{qd}-{rep}.json"))["jobs"][0]
            d = j["read"] if "read" in rw else j["write"]
            pct = d["lat_ns"]["percentile"] if d.get("lat_ns", {}).get("percentile") else d["clat_ns"]["percentile"]
            nb.append((d["iops"], pct["50.000000"] / 1000))
        except Exception as e:
            nb.append((0, 0))
    print(f"| {rw} | {qd} | " + " / ".join(f"{r['iops']:,.0f}" for r in rs) + " | " +
          " / ".join(f"{r['p50_us']:.1f}" for r in rs) + " | " +
          " / ".join(f"{x[0]:,.0f}" for x in nb) + " | " + " / ".join(f"{x[1]:.1f}" for x in nb) + " |")
