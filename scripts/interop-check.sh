#!/usr/bin/env bash
# Interop check (issue 5, point 6): a checkpoint written by `dsv32 train` must load in
# Hugging Face transformers (DeepseekV32ForCausalLM.from_pretrained) and give the same
# logits, relative error ≤ 1e-4 in float32.
#
# Step 1, here on the CPU (about a minute): train the tiny DSA model a few steps so every
# weight — indexers and expert biases included — moves away from its start, then write our
# logits of a fixed 96-token prompt (longer than index_topk 16, so the indexer's selection
# matters). Everything the GPU side needs lands in $BUNDLE (default .gpu/interop, < 2 MB):
#
#   ckpt/             the checkpoint's config.json + model.safetensors (as `dsv32 train` wrote them)
#   ours.safetensors  our logits [96, 320] float32 and indexer top-k topk_<layer> [96, 16]
#   ckpt-minimal/, ours-min.safetensors  the same for a run from a minimal hub-style config.json
#   ids.json          the prompt's token ids
#
# Step 2, on the GPU machine (transformers 5.17):
#   python3 bench/hf_interop.py .gpu/interop/ckpt .gpu/interop/ours.safetensors --ids .gpu/interop/ids.json
#   python3 bench/hf_interop.py .gpu/interop/ckpt-minimal .gpu/interop/ours-min.safetensors --ids .gpu/interop/ids.json
#
# Usage: scripts/interop-check.sh [BUNDLE]
set -euo pipefail
cd "$(dirname "$0")/.."
export GOMLX_NO_AUTO_INSTALL=1
BUNDLE=${1:-.gpu/interop}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BIN=$WORK/dsv32
go build -tags noxla -o "$BIN" ./cmd/dsv32

# Data: synthetic stories, a 320-id tokenizer, token shards (docs/training.md).
"$BIN" data synth --task stories --n 300 --out "$WORK/stories.jsonl"
python3 -c "import json,sys;[print(json.loads(l)['text']) for l in open(sys.argv[1])]" "$WORK/stories.jsonl" > "$WORK/stories.txt"
"$BIN" tokenizer train --vocab-size 320 --out "$WORK/tokenizer.json" "$WORK/stories.txt"
"$BIN" data tokenize --tokenizer "$WORK/tokenizer.json" --out "$WORK/shards" "$WORK/stories.jsonl"

# 12 steps of DSA stage 2 (top-k attention, every weight trains, expert biases move) from the
# tiny fixture's weights, whose spread keeps the indexer's top-k well separated.
"$BIN" train --stage dsa-sparse --model testdata/tiny-dsa --data "$WORK/shards" --tokenizer "$WORK/tokenizer.json" \
	--out "$WORK/run" --steps 12 --batch 4 --seq-len 64 --warmup 2 --lr 3e-3 --eval-every 0 --no-bar
CKPT="$WORK/run/step-00000012"

# The prompt: the first 96 tokens of the stories (positions 0..95).
IDS=$(head -c 2000 "$WORK/stories.txt" | "$BIN" tokenize --tokenizer "$WORK/tokenizer.json" --json |
	python3 -c "import json,sys; ids=json.load(sys.stdin)['ids'][:96]; assert len(ids)==96, len(ids); print(','.join(map(str,ids)))")
"$BIN" logits --model "$CKPT" --ids "$IDS" --out "$WORK/ours.safetensors"

# A second run from random weights of a minimal, DeepSeek-hub-style config.json (rope_theta at
# the top level; no architectures, layer_types, mlp_layer_types, rope_parameters): `dsv32 train`
# writes a --config's JSON into its checkpoints as given, so this checks that such a checkpoint
# loads in transformers too.
python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
for k in ("architectures", "layer_types", "mlp_layer_types", "rope_parameters", "head_dim", "qk_head_dim", "transformers_version"):
    c.pop(k, None)
c["rope_theta"] = 10000.0
json.dump(c, open(sys.argv[2], "w"), indent=2)
' testdata/tiny-dsa/config.json "$WORK/minimal.json"
"$BIN" train --stage dsa-sparse --config "$WORK/minimal.json" --init-std 0.08 --seed 7 --data "$WORK/shards" \
	--out "$WORK/run-min" --steps 12 --batch 4 --seq-len 64 --warmup 2 --lr 3e-3 --eval-every 0 --no-bar
CKPT_MIN="$WORK/run-min/step-00000012"
"$BIN" logits --model "$CKPT_MIN" --ids "$IDS" --out "$WORK/ours-min.safetensors"

cmp -s "$CKPT/model.safetensors" testdata/tiny-dsa/model.safetensors && { echo "weights did not change" >&2; exit 1; }
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/ckpt" "$BUNDLE/ckpt-minimal"
cp "$CKPT/config.json" "$CKPT/model.safetensors" "$BUNDLE/ckpt/"
cp "$CKPT_MIN/config.json" "$CKPT_MIN/model.safetensors" "$BUNDLE/ckpt-minimal/"
cp "$WORK/ours.safetensors" "$WORK/ours-min.safetensors" "$BUNDLE/"
python3 -c "import json,sys; json.dump({'ids':[int(x) for x in sys.argv[1].split(',')]}, open(sys.argv[2],'w'))" "$IDS" "$BUNDLE/ids.json"
du -sh "$BUNDLE"
echo "bundle in $BUNDLE; on the GPU:"
echo "  python3 bench/hf_interop.py $BUNDLE/ckpt $BUNDLE/ours.safetensors --ids $BUNDLE/ids.json"
echo "  python3 bench/hf_interop.py $BUNDLE/ckpt-minimal $BUNDLE/ours-min.safetensors --ids $BUNDLE/ids.json"
