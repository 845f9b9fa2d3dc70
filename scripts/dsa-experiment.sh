#!/usr/bin/env bash
# DeepSeek Sparse Attention's claim at small scale (docs/dsa-experiment.md):
# a dense model, DSA stage 1 (indexer warm-up by KL) then stage 2 (top-k
# sparse training) keeps the dense model's quality; stage 2 without stage 1
# (a random indexer) does worse.
#
#   scripts/dsa-experiment.sh BACKEND OUTDIR [SCALE]
#
# BACKEND: go, or xla:/abs/path/xla_cuda_plugin.so (add ",preallocate=false":
# the script runs several trainings at once on the one GPU). SCALE: gpu
# (default; 4096-token rows, ~37M parameters), gpu1k (the same model at
# 1024-token rows, with data made for learning retrieval), gpu4k (gpu1k's
# data at 4096-token rows, index_topk 256; meant with INIT, below), probe (the gpu model and data,
# a few steps of each stage: prints the seconds per step to size the real
# run), cpu (a tiny model, 256-token rows: checks that everything runs).
# Needs only the dsv32 binary (DSV32, default .gpu/dsv32) and bash.
#
# Arms, all from the one dense pre-trained checkpoint:
#   dense        the dense model, dense attention                      (reference)
#   dense-topk   the dense model, top-k attention with its untrained indexer
#   stage1-topk  after stage 1 only, top-k attention
#   stage1+2     stage 1, then stage 2                                  (a: DSA)
#   stage2-only  stage 2 straight from the dense model: random indexer  (b)
#   dense-more   dense pre-training continued for as many steps as stage 2
#                (the dense model with the same extra training as (a))
# Pre-training never trains the indexers, so in the dense checkpoint they are
# still at their random initialisation (N(0, 0.02²), seed 1).
#
# Every number below can be overridden from the environment (STEPS_PRE=…).
# STOP_AFTER=pretrain ends after pre-training; START_AFTER=pretrain goes on
# from there in the same OUTDIR (one device call each). INIT=CHECKPOINT
# starts pre-training from that checkpoint's weights and tokenizer (this
# run's config: its rows and index_topk), e.g. a gpu1k model extended to 4096.
# Writes OUTDIR/{data,runs,eval,logs}, OUTDIR/summary.{json,md} and charts.
set -euo pipefail

BACKEND=${1:?usage: $0 BACKEND OUTDIR [gpu|gpu1k|gpu4k|probe|cpu]}
OUT=${2:?usage: $0 BACKEND OUTDIR [gpu|gpu1k|gpu4k|probe|cpu]}
SCALE=${3:-gpu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DSV32=${DSV32:-$ROOT/.gpu/dsv32}
DSV32=$(cd "$(dirname "$DSV32")" && pwd)/$(basename "$DSV32")
export GOMLX_NO_AUTO_INSTALL=1
# The default model's BPE (1427 ids, stories + digits), or TOKENIZER=train: a
# BPE of VOCAB ids trained on samples of this experiment's own documents, in
# which the retrieval template's words are whole tokens.
TOKENIZER=${TOKENIZER:-} VOCAB=${VOCAB:-}
if [[ -n ${INIT:-} ]]; then
	# A model extended from INIT keeps INIT's tokenizer and vocabulary.
	[[ -f $INIT/config.json && -f $INIT/tokenizer.json ]] || {
		echo "INIT=$INIT: want a checkpoint directory (config.json, tokenizer.json, weights)" >&2
		exit 2
	}
	INIT=$(cd "$INIT" && pwd)
	TOKENIZER=$INIT/tokenizer.json
	VOCAB=$(sed -n 's/^ *"vocab_size": *\([0-9]*\).*/\1/p' "$INIT/config.json")
fi

case $SCALE in
gpu4k)
	# gpu1k's data and model at 4096-token rows, index_topk 256 (1/16): a
	# passkey anywhere in 128–4096 tokens (every evaluation document 4096).
	# Meant to extend a gpu1k model that already retrieves (INIT=its
	# checkpoint): learning the lookup from scratch at 4096 failed in session 4.
	SEQ=${SEQ:-4096} TOPK=${TOPK:-256} BATCH=${BATCH:-2} N_RET=${N_RET:-30000} N_STORIES=${N_STORIES:-20000}
	N_COPY=${N_COPY:-50000} N_RECALL=${N_RECALL:-100000} N_EVAL=${N_EVAL:-200}
	STEPS_PRE=${STEPS_PRE:-6000} CAP_PRE=${CAP_PRE:-450} LR_PRE=${LR_PRE:-5e-4} WARMUP_PRE=${WARMUP_PRE:-50}
	;&
gpu1k)
	# The gpu model at 1024-token rows (index_topk 64, 1/16 again), with data
	# built for a small model to learn retrieval: one fact a document (a
	# passkey) in 128–1024 tokens (short ones bootstrap the lookup; every
	# evaluation document is 1024), its value 4 spaced letters, its answer restating the fact, a
	# filler of 3-word lists, a BPE trained on these documents (so the
	# template's words are whole tokens and the letters stand apart), copy and
	# associative-recall documents, stories told twice. Session 4 learned no
	# retrieval with 8 facts of spaced digits in the default tokenizer, nor
	# session 5 with 8 facts of letters (docs/dsa-experiment.md).
	SEQ=${SEQ:-1024} TOPK=${TOPK:-64} RET_MIN=${RET_MIN:-128} PAIRS=${PAIRS:-1} DIGITS=${DIGITS:-4}
	: "${TOKENIZER:=train}" "${VOCAB:=2048}"
	SPACED=${SPACED:-1} FILLER_WORDS=${FILLER_WORDS:-3} REPEAT=${REPEAT:-2} N_COPY=${N_COPY:-100000}
	RESTATE=${RESTATE:-1} LETTERS=${LETTERS:-1} N_RECALL=${N_RECALL:-200000}
	N_RET=${N_RET:-60000} N_STORIES=${N_STORIES:-20000} BATCH=${BATCH:-8}
	STEPS_PRE=${STEPS_PRE:-8000} CAP_PRE=${CAP_PRE:-420} EARLY=${EARLY:-40}
	;&
gpu | probe)
	# Model: ~37M parameters (~14M active): 8 layers (the first dense),
	# hidden 512, 8 heads, 8 routed experts (top-2) + 1 shared, index_topk
	# 256 of 4096 keys (1/16).
	: "${LAYERS:=8}" "${HIDDEN:=512}" "${HEADS:=8}" "${INTER:=1536}" "${MOE_INTER:=256}" "${EXPERTS:=8}"
	: "${Q_LORA:=256}" "${KV_LORA:=128}" "${NOPE:=64}" "${ROPE:=32}" "${VDIM:=64}"
	: "${IDX_HEADS:=4}" "${IDX_DIM:=64}" "${TOPK:=256}"
	# Data: retrieval documents of 512–4096 tokens, 8 facts and 8
	# questions each (every answer needs a fact far back), and stories.
	: "${SEQ:=4096}" "${RET_MIN:=512}" "${N_RET:=4000}" "${N_STORIES:=40000}" "${PAIRS:=8}" "${DIGITS:=6}" "${REPEAT:=1}" "${SPACED:=0}"
	: "${BATCH:=2}" "${ACCUM:=1}"
	# Steps (the lead sizes these from a probe run: see docs/dsa-experiment.md).
	: "${STEPS_PRE:=1200}" "${STEPS_WARM:=150}" "${STEPS_SPARSE:=300}"
	: "${LR_PRE:=1.5e-3}" "${LR_WARM:=1e-3}" "${LR_SPARSE:=3e-4}" "${WARMUP_PRE:=100}" "${WARMUP_DSA:=20}"
	# Time caps (s) per stage, a safety net: SIGINT saves a checkpoint and the
	# pipeline goes on from it (compile time included).
	: "${CAP_PRE:=230}" "${CAP_WARM:=70}" "${CAP_SPARSE:=150}"
	: "${N_EVAL:=100}" "${EVAL_ROWS:=16}" "${EVAL_BATCH:=4}" "${JOBS:=6}" "${CAP_EVAL:=150}"
	if [[ $SCALE == probe ]]; then
		STEPS_PRE=${PROBE_STEPS:-12} STEPS_WARM=${PROBE_STEPS:-12} STEPS_SPARSE=${PROBE_STEPS:-12}
		WARMUP_PRE=2 WARMUP_DSA=2 N_RET=200 N_STORIES=2000 N_EVAL=8 EVAL_ROWS=4
	fi
	;;
cpu)
	: "${LAYERS:=2}" "${HIDDEN:=64}" "${HEADS:=4}" "${INTER:=128}" "${MOE_INTER:=32}" "${EXPERTS:=8}"
	: "${Q_LORA:=48}" "${KV_LORA:=32}" "${NOPE:=16}" "${ROPE:=8}" "${VDIM:=16}"
	: "${IDX_HEADS:=4}" "${IDX_DIM:=32}" "${TOPK:=32}"
	: "${SEQ:=256}" "${RET_MIN:=160}" "${N_RET:=300}" "${N_STORIES:=2000}" "${PAIRS:=2}" "${DIGITS:=6}" "${REPEAT:=1}" "${SPACED:=0}"
	: "${BATCH:=4}" "${ACCUM:=1}"
	: "${STEPS_PRE:=40}" "${STEPS_WARM:=10}" "${STEPS_SPARSE:=12}"
	: "${LR_PRE:=3e-3}" "${LR_WARM:=1e-3}" "${LR_SPARSE:=1e-3}" "${WARMUP_PRE:=5}" "${WARMUP_DSA:=2}"
	: "${CAP_PRE:=600}" "${CAP_WARM:=600}" "${CAP_SPARSE:=600}"
	: "${N_EVAL:=8}" "${EVAL_ROWS:=4}" "${EVAL_BATCH:=4}" "${JOBS:=2}" "${CAP_EVAL:=300}"
	;;
*)
	echo "scale $SCALE: want gpu, gpu1k, gpu4k, probe or cpu" >&2
	exit 2
	;;
esac
: "${TOKENIZER:=$ROOT/internal/defaultmodel/tokenizer.json}" "${VOCAB:=1427}"
HELD_OUT=${HELD_OUT:-0.01}
# The retrieval documents' shape, the same for the training data and every evaluation.
retrieval=(--pairs "$PAIRS" --digits "$DIGITS" --words "${FILLER_WORDS:-0}") # filler words per list (0: all)
if [[ $SPACED == 1 ]]; then retrieval+=(--spaced); fi                           # digits apart: one frequent token a digit
if [[ ${RESTATE:-0} == 1 ]]; then retrieval+=(--restate); fi                     # answers restate the fact (RULER style)
if [[ ${LETTERS:-0} == 1 ]]; then retrieval+=(--letters); fi                     # values are spaced consonants: one token each
EVAL_SEED=${EVAL_SEED:-1000003} # training data uses seeds 1 and 2
if [[ -z ${DTYPE:-} ]]; then
	DTYPE=f32
	if [[ $BACKEND == xla:* ]]; then DTYPE=bf16; fi
fi

mkdir -p "$OUT"/{data,runs,eval,logs}
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS
say() { echo "== [$((SECONDS - T0))s] $*"; }

# stage NAME CAP CMD...: run CMD, logging to logs/NAME.log; stopped (and
# checkpointed) by SIGINT after CAP seconds.
stage() {
	local name=$1 cap=$2
	shift 2
	say "$name: start (cap ${cap}s)"
	local t=$SECONDS rc=0
	timeout -s INT -k 60 "$cap" "$@" >"$OUT/logs/$name.log" 2>&1 || rc=$?
	if [[ $rc == 124 ]]; then
		say "$name: stopped at its cap (${cap}s): $(grep -c . "$OUT/runs/$name/metrics.jsonl" 2>/dev/null || echo 0) steps"
	elif [[ $rc != 0 ]]; then
		say "$name: FAILED (exit $rc), last lines of logs/$name.log:"
		tail -20 "$OUT/logs/$name.log" >&2
		return "$rc"
	fi
	say "$name: done in $((SECONDS - t))s"
}
newest() { # the newest checkpoint of a run, or a clear failure
	local d
	d=$(ls -d "$1"/step-* 2>/dev/null | sort | tail -1)
	[[ -n $d ]] || {
		echo "no checkpoint in $1 (stopped before its first step? raise its CAP_*)" >&2
		return 1
	}
	echo "$d"
}

train() { # train NAME STAGE FROM STEPS LR WARMUP CAP [extra flags]
	local name=$1 st=$2 from=$3 steps=$4 lr=$5 warm=$6 cap=$7
	shift 7
	stage "$name" "$cap" "$DSV32" train --stage "$st" --data "$OUT/data/shards" --tokenizer "$OUT/data/tokenizer.json" \
		--out "$OUT/runs/$name" --steps "$steps" --lr "$lr" --warmup "$warm" --batch "$BATCH" --accum "$ACCUM" --seq-len "$SEQ" \
		--held-out "$HELD_OUT" --eval-rows "$EVAL_ROWS" --eval-every "$(((steps + 3) / 4))" --save-every "$steps" --keep 1 \
		--dtype "$DTYPE" --backend "$BACKEND" --no-bar "$from" "$@"
}

write_config() {
	local lt="" mt="" i
	for ((i = 0; i < LAYERS; i++)); do
		lt+=", \"deepseek_sparse_attention\""
		if ((i == 0)); then mt+=", \"dense\""; else mt+=", \"sparse\""; fi
	done
	lt=${lt#, } mt=${mt#, }
	cat >"$OUT/data/config.json" <<JSON
{
  "architectures": ["DeepseekV32ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "first_k_dense_replace": 1,
  "head_dim": $ROPE,
  "hidden_act": "silu",
  "hidden_size": $HIDDEN,
  "index_head_dim": $IDX_DIM,
  "index_n_heads": $IDX_HEADS,
  "index_topk": $TOPK,
  "initializer_range": 0.02,
  "intermediate_size": $INTER,
  "kv_lora_rank": $KV_LORA,
  "layer_types": [$lt],
  "max_position_embeddings": $((SEQ * 2)),
  "mlp_bias": false,
  "mlp_layer_types": [$mt],
  "model_type": "deepseek_v32",
  "moe_intermediate_size": $MOE_INTER,
  "n_group": 4,
  "n_routed_experts": $EXPERTS,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": $HEADS,
  "num_experts_per_tok": 2,
  "num_hidden_layers": $LAYERS,
  "num_key_value_heads": $HEADS,
  "pad_token_id": null,
  "q_lora_rank": $Q_LORA,
  "qk_head_dim": $((NOPE + ROPE)),
  "qk_nope_head_dim": $NOPE,
  "qk_rope_head_dim": $ROPE,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
  "routed_scaling_factor": 2.5,
  "tie_word_embeddings": false,
  "topk_group": 2,
  "use_cache": true,
  "v_head_dim": $VDIM,
  "vocab_size": $VOCAB
}
JSON
}

if [[ ${START_AFTER:-} != pretrain ]]; then
# --- data: stories + retrieval documents, one tokenizer, token shards --------
say "data ($SCALE scale: seq $SEQ, index_topk $TOPK, $N_RET retrieval documents, $N_STORIES stories)"
: >"$OUT/logs/data.log"
if [[ $TOKENIZER == train ]]; then
	# Samples of every kind of document, without length measurement (that
	# needs the tokenizer), then the BPE; the real data follows with it.
	mkdir -p "$OUT/data/tok"
	"$DSV32" data synth --task retrieval --n 2000 --tokens "$RET_MIN" --max-tokens "$SEQ" "${retrieval[@]}" --questions "$PAIRS" \
		--seed 9 --out "$OUT/data/tok/retrieval.jsonl" >>"$OUT/logs/data.log" 2>&1
	"$DSV32" data synth --task stories --n 4000 --seed 9 --out "$OUT/data/tok/stories.jsonl" >>"$OUT/logs/data.log" 2>&1
	"$DSV32" data synth --task recall --pairs "${RECALL_PAIRS:-8}" --n 2000 --seed 9 --out "$OUT/data/tok/recall.jsonl" >>"$OUT/logs/data.log" 2>&1
	"$DSV32" data synth --task copy --n 2000 --seed 9 --out "$OUT/data/tok/copy.jsonl" >>"$OUT/logs/data.log" 2>&1
	"$DSV32" data synth --task induction --n 2000 --seed 9 --out "$OUT/data/tok/induction.jsonl" >>"$OUT/logs/data.log" 2>&1
	VOCAB=$("$DSV32" tokenizer train --vocab-size "$VOCAB" --out "$OUT/data/tokenizer.json" "$OUT"/data/tok/*.jsonl 2>>"$OUT/logs/data.log" |
		sed -n 's/^wrote .*: \([0-9]*\) ids$/\1/p')
	[[ -n $VOCAB ]] || { echo "tokenizer train failed: see $OUT/logs/data.log" >&2; exit 1; }
	say "tokenizer: $VOCAB ids trained on the experiment's documents"
else
	cp "$TOKENIZER" "$OUT/data/tokenizer.json"
fi
"$DSV32" data synth --task retrieval --n "$N_RET" --tokens "$RET_MIN" --max-tokens "$SEQ" "${retrieval[@]}" --questions "$PAIRS" \
	--seed 1 --tokenizer "$OUT/data/tokenizer.json" --out "$OUT/data/retrieval.jsonl" >>"$OUT/logs/data.log" 2>&1
"$DSV32" data synth --task stories --n "$N_STORIES" --repeat "$REPEAT" --seed 2 --out "$OUT/data/stories.jsonl" >>"$OUT/logs/data.log" 2>&1
rm -rf "$OUT/data/shards"
texts=("$OUT/data/retrieval.jsonl" "$OUT/data/stories.jsonl")
if ((${N_COPY:-0} > 0)); then # random letter strings and their copies: dense practice in copying
	"$DSV32" data synth --task copy --n "$N_COPY" --seed 3 --out "$OUT/data/copy.jsonl" >>"$OUT/logs/data.log" 2>&1
	texts+=("$OUT/data/copy.jsonl")
fi
if ((${N_RECALL:-0} > 0)); then # associative recall: the retrieval lookup at short range, densely supervised
	"$DSV32" data synth --task recall --pairs "${RECALL_PAIRS:-8}" --n "$N_RECALL" --seed 4 --out "$OUT/data/recall.jsonl" >>"$OUT/logs/data.log" 2>&1
	texts+=("$OUT/data/recall.jsonl")
fi
if ((${N_INDUCTION:-0} > 0)); then # a random pseudo-word sequence told twice: the test for copying attention
	"$DSV32" data synth --task induction --n "$N_INDUCTION" --seed 5 --out "$OUT/data/induction.jsonl" >>"$OUT/logs/data.log" 2>&1
	texts+=("$OUT/data/induction.jsonl")
	# ONLY_INDUCTION=1 (with STOP_AFTER=pretrain): train on these alone, a
	# check that the stack learns an induction head at all (the loss falls
	# from ln 256 ≈ 5.5 towards half of it when it does).
	if [[ ${ONLY_INDUCTION:-0} == 1 ]]; then texts=("$OUT/data/induction.jsonl"); fi
fi
"$DSV32" data tokenize --tokenizer "$OUT/data/tokenizer.json" --out "$OUT/data/shards" "${texts[@]}" >>"$OUT/logs/data.log" 2>&1
write_config
"$DSV32" info "$OUT/data/config.json" >"$OUT/logs/info.log" 2>&1
grep -i "param" "$OUT/logs/info.log" | head -4 || true
"$DSV32" data inspect "$OUT/data/shards" --show 0 2>&1 | grep -E "^[0-9]+ shards|^document tokens" || true

# --- dense pre-training ------------------------------------------------------
# CURVE=K saves every K steps and measures each checkpoint's dense retrieval
# accuracy while training goes on (eval/curve-step-*.json, N_CURVE documents):
# whether, and when, the dense model learns the task. STOP_AFTER=pretrain
# ends the run after pre-training.
pre_flags=()
curve_pid=
if ((${CURVE:-0} > 0)); then
	pre_flags=(--save-every "$CURVE" --keep 0)
	# A long-range copy probe: the same held-out stories told once and told
	# twice. Per-token loss twice ≈ once means the second telling, 100–200
	# tokens after the first, is not copied; ≈ half means it is.
	for n in 1 2; do
		"$DSV32" data synth --task stories --n 400 --repeat "$n" --seed 77 --out "$OUT/data/told$n.jsonl" >>"$OUT/logs/data.log" 2>&1
		"$DSV32" data tokenize --tokenizer "$OUT/data/tokenizer.json" --out "$OUT/data/told$n" "$OUT/data/told$n.jsonl" >>"$OUT/logs/data.log" 2>&1
	done
	curve() { # evaluate each new checkpoint until pre-training is done
		local done=0 ck name
		while :; do
			[[ -e $OUT/runs/pretrain.done ]] && done=1
			for ck in "$OUT"/runs/pretrain/step-*; do
				name=$(basename "$ck")
				[[ -d $ck && ! -e $OUT/eval/curve-$name.json ]] || continue
				"$DSV32" eval retrieval --model "$ck" --backend "$BACKEND" --dtype "$DTYPE" --batch "$EVAL_BATCH" --dense \
					--n "${N_CURVE:-50}" --tokens "$SEQ" "${retrieval[@]}" --seed "$EVAL_SEED" \
					--json "$OUT/eval/curve-$name.json" >>"$OUT/logs/curve.log" 2>&1 &&
					say "curve $name: $(tail -1 "$OUT/logs/curve.log")"
				local told=()
				for n in 1 2; do
					"$DSV32" eval lm --model "$ck" --backend "$BACKEND" --dtype "$DTYPE" --batch "$EVAL_BATCH" --dense \
						--data "$OUT/data/told$n" --held-out 1 --rows 32 --seq-len "$SEQ" \
						--json "$OUT/eval/curve-$name-told$n.json" >>"$OUT/logs/curve.log" 2>&1 &&
						told+=("$(tail -1 "$OUT/logs/curve.log" | sed -n 's/.* loss \([0-9.]*\) over .*/\1/p')")
				done
				say "curve $name: held-out stories told once ${told[0]:-?}, twice ${told[1]:-?} (per token; half means copied)"
			done
			((done)) && return
			sleep 5
		done
	}
	curve &
	curve_pid=$!
fi
rm -f "$OUT/runs/pretrain.done"
from=("--config=$OUT/data/config.json")
if [[ -n ${INIT:-} ]]; then
	# INIT's weights under this run's config (rows, index_topk): the
	# architecture and vocabulary must be the same, which loading checks.
	rm -rf "$OUT/data/init"
	mkdir -p "$OUT/data/init"
	for f in "$INIT"/*.safetensors; do
		[[ $(basename "$f") == optimizer.safetensors ]] || cp "$f" "$OUT/data/init/"
	done
	cp "$OUT/data/config.json" "$OUT/data/tokenizer.json" "$OUT/data/init/"
	from=("--model=$OUT/data/init")
	say "pretrain: from the weights of $INIT"
fi
train pretrain pretrain "${from[@]}" "$STEPS_PRE" "$LR_PRE" "$WARMUP_PRE" "$CAP_PRE" "${pre_flags[@]}"
PRE=$(newest "$OUT/runs/pretrain")
if [[ -n $curve_pid ]]; then
	touch "$OUT/runs/pretrain.done"
	wait "$curve_pid" || true
fi
if [[ ${STOP_AFTER:-} == pretrain ]]; then
	if [[ -n $curve_pid ]]; then # the learning curve's table and chart
		"$DSV32" eval summary "$OUT" >"$OUT/logs/summary.log" 2>&1 && say "$(tail -1 "$OUT/logs/summary.log")"
	fi
	say "stopping after pre-training (STOP_AFTER=pretrain): $PRE"
	exit 0
fi

else
	# START_AFTER=pretrain: the data and the pre-trained model of an earlier
	# STOP_AFTER=pretrain run in the same OUTDIR (a device call's time limit
	# splits the pipeline in two).
	PRE=$(newest "$OUT/runs/pretrain")
	say "starting after pre-training (START_AFTER=pretrain): $PRE"
fi

# --- after pre-training, three branches at once ------------------------------
# (b) stage 2 from the dense checkpoint; dense-more: as many dense steps; and
# (a) stage 1 then stage 2.
# EARLY=K also keeps each branch's checkpoint at step K, evaluated as the
# arms stage1+2@K, stage2-only@K and dense-more@K: stage 2 without stage 1
# starts broken, and how long it stays so is part of the comparison.
early=()
if ((${EARLY:-0} > 0 && EARLY < STEPS_SPARSE)); then early=(--save-every "$EARLY" --keep 0); fi
pids=()
train stage2-only dsa-sparse "--model=$PRE" "$STEPS_SPARSE" "$LR_SPARSE" "$WARMUP_DSA" "$CAP_SPARSE" "${early[@]}" &
pids+=($!)
train dense-more pretrain "--model=$PRE" "$STEPS_SPARSE" "$LR_SPARSE" "$WARMUP_DSA" "$CAP_SPARSE" "${early[@]}" &
pids+=($!)
(
	train stage1 dsa-warmup "--model=$PRE" "$STEPS_WARM" "$LR_WARM" "$WARMUP_DSA" "$CAP_WARM"
	s1=$(newest "$OUT/runs/stage1") || exit 1
	train stage1+2 dsa-sparse "--model=$s1" "$STEPS_SPARSE" "$LR_SPARSE" "$WARMUP_DSA" "$CAP_SPARSE" "${early[@]}"
) &
pids+=($!)
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
((fail == 0)) || {
	say "a training branch failed"
	exit 1
}

# --- evaluation: every arm on held-out retrieval documents and held-out rows --
declare -A CKPT=(
	[dense]=$PRE [dense-topk]=$PRE
	[stage1-topk]=$(newest "$OUT/runs/stage1")
	[stage1+2]=$(newest "$OUT/runs/stage1+2")
	[stage2-only]=$(newest "$OUT/runs/stage2-only")
	[dense-more]=$(newest "$OUT/runs/dense-more")
)
ARMS=(dense dense-topk stage1-topk stage1+2 stage2-only dense-more)
if ((${#early[@]} > 0)); then
	for run in stage1+2 stage2-only dense-more; do
		ck=$OUT/runs/$run/$(printf 'step-%08d' "$EARLY")
		if [[ -d $ck ]]; then
			CKPT[$run@$EARLY]=$ck
			ARMS+=("$run@$EARLY")
		fi
	done
fi
evaluate() { # evaluate ARM KIND
	local arm=$1 kind=$2 attn=()
	if [[ $arm == dense || $arm == dense-more* ]]; then attn=(--dense); fi
	local common=(--model "${CKPT[$arm]}" --backend "$BACKEND" --dtype "$DTYPE" --batch "$EVAL_BATCH" "${attn[@]}"
		--json "$OUT/eval/$arm.$kind.json")
	if [[ $kind == retrieval ]]; then
		timeout -k 10 "$CAP_EVAL" "$DSV32" eval retrieval "${common[@]}" --n "$N_EVAL" --tokens "$SEQ" "${retrieval[@]}" --seed "$EVAL_SEED"
	else
		timeout -k 10 "$CAP_EVAL" "$DSV32" eval lm "${common[@]}" --data "$OUT/data/shards" --held-out "$HELD_OUT" --rows "$EVAL_ROWS" --seq-len "$SEQ"
	fi >"$OUT/logs/eval-$arm-$kind.log" 2>&1 || {
		echo "eval $arm $kind FAILED:" >&2
		tail -5 "$OUT/logs/eval-$arm-$kind.log" >&2
		return 1
	}
	say "eval $arm $kind: $(tail -1 "$OUT/logs/eval-$arm-$kind.log")"
}
say "evaluation: ${#ARMS[@]} arms, $N_EVAL retrieval documents of $SEQ tokens (seed $EVAL_SEED), $EVAL_ROWS held-out rows"
pids=()
for arm in "${ARMS[@]}"; do
	for kind in retrieval lm; do
		while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
		evaluate "$arm" "$kind" &
		pids+=($!)
	done
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done

# --- summary and charts --------------------------------------------------------
arms=$(IFS=,; echo "${ARMS[*]}")
"$DSV32" eval summary "$OUT" --arms "$arms" --reference dense-more >"$OUT/logs/summary.log" 2>&1 || {
	tail -20 "$OUT/logs/summary.log" >&2
	exit 1
}
cat "$OUT/summary.md"
if ((fail != 0)); then say "some evaluations failed (logs/eval-*.log)"; fi
say "finished: $(tail -1 "$OUT/logs/summary.log")" # wrote OUTDIR: summary.json, summary.md, the charts
exit "$fail"
