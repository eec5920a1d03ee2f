#!/usr/bin/python3
"""util/bench/plot.py - draw docs/benchmarks.json as docs/benchmarks.png.

    util/bench/plot.py [BENCH_JSON] [OUT_PNG]   (defaults: docs/benchmarks.json, docs/benchmarks.png)

Left: latency of one create + delete cycle per scenario (VG size), vglet against the floor
(the bare lvm commands in the same run), median with the p95 as a whisker. Right: the ratio
vglet / floor of the median, per scenario, for the cycle, the create and the delete. Run by
util/bench/run.sh after a full run; needs python3-matplotlib (installed when missing).
"""
import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")  # no display: a file is written
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks.json"
out = sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks.png"
with open(src) as f:
    bench = json.load(f)

rows = bench["latency"]
# Wrapped: four scenario names side by side overlap at this width.
names = [textwrap.fill(r["scenario"], 14) for r in rows]
x = range(len(rows))
width = 0.38

fig, (lat, ratio) = plt.subplots(1, 2, figsize=(11, 4.2))

for offset, who, colour in ((-width / 2, "vglet", "#2b6cb0"), (width / 2, "floor", "#a0aec0")):
    p50 = [r[f"{who}_cycle"]["p50_ms"] / 1000 for r in rows]
    p95 = [r[f"{who}_cycle"]["p95_ms"] / 1000 for r in rows]
    bars = lat.bar([i + offset for i in x], p50, width, color=colour,
                   label="vglet (CSI)" if who == "vglet" else "floor (bare lvm)")
    lat.errorbar([i + offset for i in x], p50, yerr=[[0] * len(rows), [b - a for a, b in zip(p50, p95)]],
                 fmt="none", ecolor="#2d3748", capsize=3, linewidth=1)
    lat.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
lat.set_xticks(list(x), names, fontsize=9)
lat.set_ylabel("seconds per create + delete (median, whisker p95)")
lat.set_title("Latency per cycle")
lat.legend(fontsize=9)

for offset, op, colour in ((-0.27, "cycle", "#2b6cb0"), (0, "create", "#38a169"), (0.27, "delete", "#dd6b20")):
    vals = [r[f"vglet_{op}"]["p50_ms"] / r[f"floor_{op}"]["p50_ms"] for r in rows]
    bars = ratio.bar([i + offset for i in x], vals, 0.25, color=colour, label=op)
    ratio.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
ratio.axhline(1.0, color="#2d3748", linewidth=1, linestyle="--")
ratio.set_xticks(list(x), names, fontsize=9)
ratio.set_ylabel("vglet / floor (medians)")
ratio.set_title("Ratio by VG size (1.0 = the bare commands)")
ratio.legend(fontsize=9)

m = bench["machine"]
fig.suptitle(f"vglet benchmarks, {bench['date']}: {m['environment']}, {m['lvm']}", fontsize=9)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"plot: {out}")
