#!/usr/bin/env bash
# Decode speed side by side (issue 4, point 4): `dsv32 bench decode` (GoMLX, XLA CUDA plugin)
# and bench/hf_decode.py (transformers' DeepseekV32ForCausalLM, bf16, sdpa) on the same random
# 3B configuration, in one run on one machine. Writes OUTDIR/decode-h200.json with both reports,
# the throughput ratios and each point's time over its memory-bandwidth floor, plus each side's
# own JSON. About 5 minutes on an H200 (transformers' 32K prefills are most of it).
#
# Usage (GPU machine, repository root):  bench/decode_side_by_side.sh [OUTDIR]
#   OUTDIR defaults to $OUT if set, else docs/bench.
#   Env: BIN (default .gpu/dsv32; for the aliasing, asynchronous build of bench/donors/build.sh:
#        BIN=.gpu/dsv32-donors GOXLA_BUFFER_DONORS=1 GOXLA_ASYNC_EXECUTE=1),
#        P (PJRT plugin; default: jax_plugins.xla_cuda13's),
#        BATCH (1,8), CONTEXT (4096,16384,32768), PREFILL (8192,32768), STEPS (20),
#        TOPK (digits, the default: dsv32's decode steps select keys by digit search; sort: --select sort),
#        FLAGS (more `dsv32 bench decode` flags, e.g. "--cache-write rows --no-chain-loop --no-cuda-graphs"),
#        HLO=1 also dumps dsv32's optimised XLA programs and counts the kernels each
#        decode step launches (OUTDIR/hlo-kernels.txt).
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-docs/bench}}
BIN=${BIN:-.gpu/dsv32}
BATCH=${BATCH:-1,8} CONTEXT=${CONTEXT:-4096,16384,32768} PREFILL=${PREFILL:-8192,32768} STEPS=${STEPS:-20}
P=${P:-$(python3 -c 'import jax_plugins.xla_cuda13 as m, os; print(os.path.dirname(m.__file__))')/xla_cuda_plugin.so}
export GOMLX_NO_AUTO_INSTALL=1
mkdir -p "$OUTDIR"
OURS=$OUTDIR/decode-h200-dsv32.json
HF=$OUTDIR/decode-h200-transformers.json
rm -f "$OURS" "$HF"

echo "== dsv32 bench decode (batch $BATCH, context $CONTEXT)"
(
	if [[ ${HLO:-0} == 1 ]]; then
		rm -rf "$OUTDIR/hlo"
		export XLA_FLAGS="--xla_gpu_enable_command_buffer= --xla_dump_to=$OUTDIR/hlo --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*"
	fi
	timeout "${OURS_TIMEOUT:-300}" "$BIN" bench decode --backend "xla:$P" --batch "$BATCH" --context "$CONTEXT" \
		--prefill "$PREFILL" --steps "$STEPS" --select "${TOPK:-digits}" ${FLAGS:-} --out "$OURS"
)
echo "== transformers"
timeout "${HF_TIMEOUT:-300}" python3 bench/hf_decode.py --batch "$BATCH" --context "$CONTEXT" --prefill "$PREFILL" \
	--steps "$STEPS" --out "$HF"

if [[ ${HLO:-0} == 1 ]]; then
	# Kernels per program: the instructions of each optimised entry computation
	# that launch work (fusions, custom calls such as cuBLAS GEMMs and sorts).
	python3 - "$OUTDIR/hlo" >"$OUTDIR/hlo-kernels.txt" <<'EOF'
import glob, os, re, sys
skip = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*after_optimizations.txt"))):
    entry, counts = False, {}
    for line in open(f):
        if line.startswith("ENTRY"):
            entry = True
            continue
        if entry and line.startswith("}"):
            break
        m = re.search(r"=\s.*?\s([a-z][a-z0-9\-]*)\(", line) if entry else None
        if m and m.group(1) not in skip:
            op = m.group(1)
            if op == "custom-call":
                t = re.search(r'custom_call_target="([^"]+)"', line)
                op += ":" + (t.group(1) if t else "?")
            counts[op] = counts.get(op, 0) + 1
    total = sum(counts.values())
    top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:8])
    print(f"{total:6d}  {os.path.basename(f)[:90]}  ({top})")
EOF
	sort -rn "$OUTDIR/hlo-kernels.txt" | head -20
fi

python3 - "$OURS" "$HF" "$OUTDIR/decode-h200.json" <<'EOF'
import json, os, sys
ours_p, hf_p, out_p = sys.argv[1:]
ours = json.load(open(ours_p)) if os.path.exists(ours_p) else {}
hf = json.load(open(hf_p)) if os.path.exists(hf_p) else {}
theirs = {(d["batch"], d["pos"]): d for d in hf.get("decode", [])}
rows = []
# dsv32 per step, and chained (greedy steps fed from the device; `bench decode --chain`).
print(f"{'decode':>16s} {'transformers':>14s} {'dsv32':>10s} {'ratio':>7s} {'chained':>10s} {'ratio':>7s} {'floor':>8s} {'× floor':>8s} {'chained':>8s}")
for d in ours.get("decode", []):
    b, pos = d["Batch"], d["Pos"]
    t = theirs.get((b, pos), {})
    ratio = t["step_ms"] / d["StepMS"] if "step_ms" in t else None
    chain = d.get("chain_ms")
    cratio = t["step_ms"] / chain if chain and "step_ms" in t else None
    rows.append({"batch": b, "pos": pos, "dsv32_ms": d["StepMS"], "transformers_ms": t.get("step_ms"),
                 "transformers_error": t.get("error"), "ratio": ratio, "floor_ms": d["floor_ms"], "times_floor": d["times_floor"],
                 "chain_ms": chain, "chain_ratio": cratio, "chain_times_floor": d.get("chain_times_floor")})
    hfs = f"{t['step_ms']:.2f} ms" if "step_ms" in t else t.get("error", "—")
    cs = f"{chain:7.2f} ms" if chain else "—"
    cf = f"{d['chain_times_floor']:7.1f}×" if chain else "—"
    print(f"{f'B{b} @ {pos}':>16s} {hfs:>14s} {d['StepMS']:7.2f} ms {f'{ratio:.1f}×' if ratio else '—':>7s} "
          f"{cs:>10s} {f'{cratio:.1f}×' if cratio else '—':>7s} {d['floor_ms']:6.2f} ms {d['times_floor']:7.1f}× {cf:>8s}")
pre = {p["tokens"]: p for p in hf.get("prefill", [])}
for p in ours.get("prefill", []):
    t = pre.get(p["tokens"], {})
    r = t["ms"] / p["ms"] if "ms" in t else None
    print(f"prefill {p['tokens']:6d}: transformers {t.get('ms', float('nan')):8.1f} ms, dsv32 {p['ms']:8.1f} ms"
          + (f", {r:.2f}×" if r else ""))
json.dump({"dsv32": ours, "transformers": hf, "decode": rows}, open(out_p, "w"), indent=2)
print("wrote", out_p)
EOF
