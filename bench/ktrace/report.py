"""Summarise a ktrace.csv of `dsv32 bench decode` at one point.

Each decode step ends with the device-to-host copy of its logits (the largest
copy of the run's first steps); the kernels between two such copies are one
step. Prints, over the timed steps, the step's span on the GPU, the time the
GPU was busy, the kernel count, and the kernels taking the most time.

    python3 report.py trace.csv [--skip 2] [--steps 20] [--top 40]
"""
import argparse, collections, csv, re, statistics

ap = argparse.ArgumentParser()
ap.add_argument("trace")
ap.add_argument("--skip", type=int, default=2, help="warm-up steps")
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--top", type=int, default=40)
ap.add_argument("--marker", type=int, default=0, help="bytes of the logits copy (0: the most frequent large D2H size)")
a = ap.parse_args()

rows = []
with open(a.trace) as f:
    for r in csv.reader(f):
        if len(r) < 6:
            continue
        rows.append((r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), ",".join(r[5:])))
rows.sort(key=lambda r: r[1])
d2h = [r for r in rows if r[0] == "m2"]  # CUPTI_ACTIVITY_MEMCPY_KIND_DTOH
size = a.marker or collections.Counter(r[4] for r in d2h if r[4] >= 4096).most_common(1)[0][0]
marks = [r for r in d2h if r[4] == size]
print(f"{len(rows)} records, {len(marks)} step-end copies of {size} bytes")
# Step i's kernels run between copies i-1 and i; copies after the timed steps
# (prefill) are not steps.
marks = marks[: a.skip + a.steps]
steps = []
for prev, end in zip(marks[max(a.skip - 1, 0):], marks[max(a.skip, 1):]):
    ks = [r for r in rows if r[0] == "k" and prev[2] <= r[1] < end[1]]
    if not ks:
        continue
    busy = sum(r[2] - r[1] for r in ks)
    cps = [r for r in rows if r[0].startswith("m") and prev[2] <= r[1] < end[1]]
    api = [r for r in rows if r[0] == "d" and prev[2] <= r[1] < end[1]]
    steps.append({"span": end[2] - prev[2], "busy": busy, "n": len(ks), "kernels": ks, "copies": cps, "api": api,
                  "first": ks[0][1] - prev[2]})
if not steps:
    raise SystemExit("no steps found")
med = lambda xs: statistics.median(xs) / 1e3
graphs = collections.Counter(r[4] != 0 for s in steps for r in s["kernels"])
print(f"kernels launched from CUDA graphs: {graphs[True]} of {graphs[True] + graphs[False]}")
print(f"steps {len(steps)}: span {med([s['span'] for s in steps]):.1f} us (copy end to copy end), "
      f"GPU busy {med([s['busy'] for s in steps]):.1f} us, kernels {med([s['n'] for s in steps])*1e3:.0f}, "
      f"host gap before the first kernel {med([s['first'] for s in steps]):.1f} us")
# Copies inside a step by CUPTI kind (1 HtoD, 2 DtoH, 8 DtoD): without
# buffer donation XLA copies every updated cache each step.
cpk = collections.Counter()
for s in steps:
    for r in s["copies"]:
        cpk[r[0]] += 1
        cpk[r[0] + "_bytes"] += r[4]
for k in sorted(x for x in cpk if not x.endswith("_bytes")):
    print(f"copies {k}: {cpk[k] / len(steps):.1f} per step, {cpk[k + '_bytes'] / len(steps) / 1e6:.2f} MB per step")

# Driver calls (KTRACE_API=1): the host's time per step by call, and what
# runs in the gap before the step's first kernel.
if any(s["api"] for s in steps):
    apit, apin = collections.Counter(), collections.Counter()
    gap = collections.Counter()
    for s in steps:
        first = s["kernels"][0][1]
        for r in s["api"]:
            apit[r[5]] += r[2] - r[1]
            apin[r[5]] += 1
            if r[1] < first:
                gap[r[5]] += r[2] - r[1]
    n = len(steps)
    print(f"\ndriver calls per step: {sum(apin.values()) / n:.0f}, {sum(apit.values()) / n / 1e3:.1f} us inside them")
    for k, v in apit.most_common(15):
        print(f"{v / n / 1e3:9.1f} {apin[k] / n:7.1f}  {k}   (before the first kernel: {gap[k] / n / 1e3:.1f} us)")


def family(name):
    # XLA names kernels after their fusions: loop_add_fusion_12 -> loop_add_fusion
    return re.sub(r"([._]\d+)+_?$", "", re.sub(r"\(.*", "", name))[:70]


tot, cnt, fam, famn = collections.Counter(), collections.Counter(), collections.Counter(), collections.Counter()
for s in steps:
    for r in s["kernels"]:
        tot[r[5][:90]] += r[2] - r[1]
        cnt[r[5][:90]] += 1
        fam[family(r[5])] += r[2] - r[1]
        famn[family(r[5])] += 1
n = len(steps)
print(f"\nby kernel family (us per step, launches per step):")
for k, v in fam.most_common(a.top):
    print(f"{v / n / 1e3:9.1f} {famn[k] / n:6.1f}  {k}")
print(f"\nslowest kernels (us per step, launches per step):")
for k, v in tot.most_common(a.top):
    print(f"{v / n / 1e3:9.1f} {cnt[k] / n:6.1f}  {k}")
