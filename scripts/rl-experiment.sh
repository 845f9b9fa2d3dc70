#!/usr/bin/env bash
# The GRPO experiment of docs/rl.md: fine-tune a small DeepSeek-V3.2-architecture
# model on three tasks of the ladder (reverse, add, sort), then run `dsv32 rl`
# from it with seeds and with each stabiliser switched off. ONLY="sort" (names
# separated by spaces) limits a phase to some tasks.
#
#   scripts/rl-experiment.sh BACKEND OUT sft   # data, tokenizer, SFT, held-out sweep
#   scripts/rl-experiment.sh BACKEND OUT rl    # GRPO runs from the picked checkpoints
#
# BACKEND is "go" (CPU; use SCALE=tiny to check the plumbing) or
# "xla:/abs/path/xla_cuda_plugin.so" (the H200 runs in docs/rl.md). Runs of one
# phase go concurrently; on XLA each process allocates GPU memory on demand.
set -euo pipefail
export GOMLX_NO_AUTO_INSTALL=1
BIN=${DSV32:-.gpu/dsv32}
BACKEND=$1 OUT=$2 PHASE=$3
SCALE=${SCALE:-full}
case $BACKEND in xla:*) BACKEND="$BACKEND,preallocate=false" ;; esac

# Sizes. SCALE=tiny only checks that every step runs.
if [[ $SCALE == tiny ]]; then
	N=2000 SFT_STEPS=4 SAVE=2 EVAL_N=8 RL_STEPS=2 PROMPTS=2 GROUP=4 EVAL_EVERY=1 SEEDS="1" BATCH=4
else
	N=${N:-100000} SFT_STEPS=${SFT_STEPS:-1000} SAVE=${SAVE:-100} EVAL_N=${EVAL_N:-200}
	RL_STEPS=${RL_STEPS:-60} PROMPTS=${PROMPTS:-32} GROUP=${GROUP:-8} EVAL_EVERY=${EVAL_EVERY:-5} SEEDS=${SEEDS:-"1 2 3"} BATCH=${BATCH:-64}
fi
TASKS=("reverse:min=4,max=12" "add" "sort:min=4,max=12")
NAMES=(reverse add sort)
SEQ=${SEQ:-128} # SFT rows; every conversation here is under 48 tokens
if [[ -n ${ONLY:-} ]]; then
	keep_t=() keep_n=()
	for i in "${!NAMES[@]}"; do
		if [[ " $ONLY " == *" ${NAMES[$i]} "* ]]; then keep_t+=("${TASKS[$i]}") keep_n+=("${NAMES[$i]}"); fi
	done
	TASKS=("${keep_t[@]}") NAMES=("${keep_n[@]}")
fi
mkdir -p "$OUT"

sft() {
	local data=$OUT/data
	mkdir -p "$data"
	for i in "${!NAMES[@]}"; do
		"$BIN" data ladder --task "${TASKS[$i]}" --n "$N" --out "$data/${NAMES[$i]}.jsonl"
	done
	# Byte-level vocabulary (no merges): every digit is its own token.
	python3 - "$data" "${NAMES[@]}" <<'PY'
import json, sys
d = sys.argv[1]
with open(f"{d}/text.txt", "w") as out:
    for name in sys.argv[2:]:
        for line in open(f"{d}/{name}.jsonl"):
            for m in json.loads(line)["messages"]:
                out.write(m["content"] + "\n")
PY
	"$BIN" tokenizer train --vocab-size 263 --out "$data/tokenizer.json" "$data/text.txt"
	cat >"$data/config.json" <<'JSON'
{"architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32", "vocab_size": 263,
 "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 128,
 "num_hidden_layers": 4, "first_k_dense_replace": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
 "q_lora_rank": 128, "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "qk_head_dim": 48,
 "head_dim": 16, "v_head_dim": 32, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
 "n_group": 4, "topk_group": 2, "norm_topk_prob": true, "routed_scaling_factor": 2.5,
 "index_n_heads": 4, "index_head_dim": 32, "index_topk": 64, "hidden_act": "silu",
 "max_position_embeddings": 512, "rms_norm_eps": 1e-06, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
 "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": false, "initializer_range": 0.02,
 "attention_bias": false, "attention_dropout": 0.0, "mlp_bias": false}
JSON
	mkdir -p "$OUT/sft"
	for i in "${!NAMES[@]}"; do
		timeout "${SFT_TIMEOUT:-3000}" "$BIN" train --stage sft --config "$data/config.json" --sft "$data/${NAMES[$i]}.jsonl" \
			--tokenizer "$data/tokenizer.json" --out "$OUT/sft/${NAMES[$i]}" --steps "$SFT_STEPS" --batch "$BATCH" \
			--seq-len "$SEQ" --lr 1e-3 --warmup $((SFT_STEPS / 20 + 1)) --save-every "$SAVE" --keep 0 \
			--eval-every "$SAVE" --held-out 0.01 --no-bar --backend "$BACKEND" >"$OUT/sft/${NAMES[$i]}.log" 2>&1 &
	done
	wait
	if [[ -n ${PICKS:-} ]]; then
		# Known picks (e.g. "reverse=step-00000200 add=step-00000400"): no sweep.
		for p in $PICKS; do printf '%s\t%s\n' "${p%%=*}" "${p#*=}"; done >"$OUT/sft/picks.tsv"
		return
	fi
	# Held-out greedy accuracy of every checkpoint.
	for i in "${!NAMES[@]}"; do
		for ck in "$OUT"/sft/"${NAMES[$i]}"/step-*; do
			"$BIN" rl --model "$ck" --task "${TASKS[$i]}" --out "$ck/eval" --steps 0 --eval-n "$EVAL_N" \
				--max-tokens 16 --backend "$BACKEND" >"$ck/eval.log" 2>&1 &
		done
	done
	wait
	for i in "${!NAMES[@]}"; do
		for ck in "$OUT"/sft/"${NAMES[$i]}"/step-*; do
			printf '%s\t%s\t%s\n' "${NAMES[$i]}" "$(basename "$ck")" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$ck/eval/eval.json")"
		done
	done | tee "$OUT/sft/sweep.tsv"
	# Start GRPO where there is room to grow: per task, the first checkpoint
	# with held-out accuracy in [0.15, 0.6], else the one closest to 0.35.
	python3 - "$OUT/sft/sweep.tsv" >"$OUT/sft/picks.tsv" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
for name in dict.fromkeys(r[0] for r in rows):
    cks = sorted((r[1], float(r[2])) for r in rows if r[0] == name)
    ok = [c for c in cks if 0.15 <= c[1] <= 0.6]
    best = ok[0] if ok else min(cks, key=lambda c: abs(c[1] - 0.35))
    print(f"{name}\t{best[0]}")
PY
	cat "$OUT/sft/picks.tsv"
}

# rl NAME TASK CHECKPOINT SEED [FLAGS...]: one GRPO run in the background.
run_rl() {
	local name=$1 task=$2 ck=$3 seed=$4
	shift 4
	mkdir -p "$OUT/rl/$name"
	timeout "${RL_TIMEOUT:-3000}" "$BIN" rl --model "$ck" --task "$task" --out "$OUT/rl/$name" --steps "$RL_STEPS" \
		--prompts "$PROMPTS" --group "$GROUP" --mini-batches "${MU:-4}" --lr "${RL_LR:-1e-5}" --warmup 5 --top-p 0.95 \
		--max-tokens 16 --eval-every "$EVAL_EVERY" --eval-n "$EVAL_N" --seed "$seed" --backend "$BACKEND" "$@" \
		>"$OUT/rl/$name.log" 2>&1 &
	# At most JOBS runs at once (XLA compiles are CPU-bound; the Go backend
	# uses every core for one run).
	while (($(jobs -rp | wc -l) >= ${JOBS:-16})); do wait -n || true; done
}

rl() {
	# The starting checkpoints: PICK_reverse / PICK_add, or sft/picks.tsv (name, step dir).
	declare -A pick
	while IFS=$'\t' read -r name step; do pick[$name]=$OUT/sft/$name/$step; done <"$OUT/sft/picks.tsv"
	for i in "${!NAMES[@]}"; do
		for s in $SEEDS; do
			run_rl "${NAMES[$i]}-s$s" "${TASKS[$i]}" "${pick[${NAMES[$i]}]}" "$s"
		done
	done
	# Ablations on add, seed 1: each stabiliser off; the KL pair with β > 0.
	if [[ " ${NAMES[*]} " != *" add "* ]]; then
		wait || true
		tail -n 2 "$OUT"/rl/*.log
		return
	fi
	local t=add ck=${pick[add]}
	run_rl add-no-opsm "$t" "$ck" 1 --no-opsm
	run_rl add-no-keep-routing "$t" "$ck" 1 --no-keep-routing
	run_rl add-no-keep-mask "$t" "$ck" 1 --no-keep-mask
	run_rl add-kl-unbiased "$t" "$ck" 1 --beta 0.01
	run_rl add-kl-plain "$t" "$ck" 1 --beta 0.01 --plain-kl
	wait || true
	tail -n 2 "$OUT"/rl/*.log
}

case $PHASE in
sft) sft ;;
rl) rl ;;
*) echo "phase $PHASE: want sft or rl" >&2; exit 2 ;;
esac
