#!/usr/bin/env bash
# Training speed side by side (issue 5, point 8): `dsv32 bench train` (GoMLX, XLA CUDA plugin,
# bf16 compute over float32 masters) and bench/hf_train.py (transformers' DeepseekV32ForCausalLM,
# PyTorch, bf16 autocast over float32 weights, and pure bf16) on the same random ~1.0B
# configuration and the same batch. Writes OUTDIR/train-h200.json with both reports and the
# throughput ratios, plus each side's own JSON. About 3 minutes on an H200.
#
# Usage (GPU machine, repository root):  bench/train_side_by_side.sh [OUTDIR]
#   OUTDIR defaults to $OUT if set, else docs/bench.
#   Env: BIN (default .gpu/dsv32), P (PJRT plugin; default: jax_plugins.xla_cuda13's),
#        B (4), T (2048), WARMUP (3), STEPS (10), STAGE (pretrain).
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-docs/bench}}
BIN=${BIN:-.gpu/dsv32}
B=${B:-4}; T=${T:-2048}; WARMUP=${WARMUP:-3}; STEPS=${STEPS:-10}; STAGE=${STAGE:-pretrain}
P=${P:-$(python3 -c 'import jax_plugins.xla_cuda13 as m, os; print(os.path.dirname(m.__file__))')/xla_cuda_plugin.so}
export GOMLX_NO_AUTO_INSTALL=1
mkdir -p "$OUTDIR"
OURS=$OUTDIR/train-h200-dsv32.json
HF=$OUTDIR/train-h200-transformers.json
rm -f "$OURS" "$HF"

echo "== dsv32 bench train (B=$B T=$T, $STAGE)"
timeout "${OURS_TIMEOUT:-200}" "$BIN" bench train --backend "xla:$P" --stage "$STAGE" --batch "$B" --seq-len "$T" \
	--warmup "$WARMUP" --steps "$STEPS" --out "$OURS"
echo "== transformers (B=$B T=$T)"
timeout "${HF_TIMEOUT:-150}" python3 bench/hf_train.py --batch "$B" --seq-len "$T" --warmup "$WARMUP" --steps "$STEPS" --out "$HF"

python3 - "$OURS" "$HF" "$OUTDIR/train-h200.json" <<'EOF'
import json, os, sys
ours_p, hf_p, out_p = sys.argv[1:]
ours = json.load(open(ours_p)) if os.path.exists(ours_p) else None
hf = json.load(open(hf_p)) if os.path.exists(hf_p) else None
rep = {"dsv32": ours, "transformers": hf, "ratios": {}}
rows = []
if ours:
    rows.append(("dsv32 bf16/f32-master", ours))
for v in (hf or {}).get("variants", []):
    rows.append((f"transformers {v['variant']} ({v['experts_implementation']})", v))
    if ours:
        rep["ratios"][f"dsv32 / transformers {v['variant']}"] = ours["tokens_per_s"] / v["tokens_per_s"]
print(f"{'':42s} {'ms/step':>9s} {'tokens/s':>10s} {'TFLOP/s':>8s} {'MFU':>6s} {'GFLOP/tok':>9s} {'mem GiB':>8s}")
for name, r in rows:
    mem = r.get("peak_memory_gb")
    print(f"{name:42s} {r['step_ms']:9.1f} {r['tokens_per_s']:10.0f} {r['model_tflops_per_s']:8.1f} "
          f"{100 * r['mfu']:5.1f}% {r['flops_per_token'] / 1e9:9.3f} {'-' if mem is None else f'{mem:.1f}':>8s}")
for k, v in rep["ratios"].items():
    print(f"{k}: {v:.2f}x")
if hf and hf.get("errors"):
    print("transformers errors:", hf["errors"])
json.dump(rep, open(out_p, "w"), indent=2)
print("wrote", out_p)
EOF
