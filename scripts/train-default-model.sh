#!/usr/bin/env bash
# Trains the default model embedded in the dsv32 binary (internal/defaultmodel;
# its card is docs/default-model.md): synthetic data, a byte-level BPE, dense
# pre-training, DSA stage 1 and stage 2, SFT on synthetic conversations.
#
#   BIN=./dsv32 WORK=/tmp/dsv32-default scripts/train-default-model.sh [stage...]
#
# Stages: data pretrain warmup sparse sft install (default: all, in order).
# The default model was trained with the Go backend on one CPU core
# (GOMAXPROCS=1), about 35 minutes in all. BACKEND=xla:/abs/path/xla_cuda_plugin.so
# runs the same commands on a GPU. CAP_<STAGE> (seconds) stops a stage early
# with SIGINT, which saves a checkpoint; the next stage starts from the newest
# checkpoint either way.
set -euo pipefail

BIN=${BIN:-dsv32}
WORK=${WORK:-/tmp/dsv32-default}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export GOMLX_NO_AUTO_INSTALL=1
BK=()
if [[ -n "${BACKEND:-}" ]]; then BK=(--backend "$BACKEND"); fi
mkdir -p "$WORK"
cd "$WORK"

# stage NAME CAP CMD...: run CMD, stopped (and checkpointed) after CAP seconds.
stage() {
	local name=$1 cap=$2
	shift 2
	echo "== $name ($(date -u +%T), cap ${cap}s): $*"
	local t0=$SECONDS
	timeout -s INT -k 60 "$cap" "$@" || [[ $? == 124 ]]
	echo "== $name took $((SECONDS - t0))s"
}
newest() { ls -d "$1"/step-* | sort | tail -1; }

data() {
	# 20,000 tiny stories and 5,000 lines of arithmetic facts ("example i of a
	# seed is always the same").
	"$BIN" data synth --task stories --n 20000 --seed 1 --out stories.jsonl
	"$BIN" data synth --task arith --n 5000 --seed 1 --out arith.jsonl
	gen_convs 3000 1 >convs-tok.jsonl
	gen_convs 20000 2 >convs.jsonl
	python3 - <<'PY'
import itertools, json
with open('tok.txt', 'w') as f:
    for l in itertools.islice(open('stories.jsonl'), 20000): f.write(json.loads(l)['text'] + '\n')
    for l in itertools.islice(open('arith.jsonl'), 2000): f.write(json.loads(l)['text'] + '\n')
    for l in open('convs-tok.jsonl'):
        for m in json.loads(l)['messages']:
            f.write(m['content'] + '\n')
            if 'reasoning_content' in m: f.write(m['reasoning_content'] + '\n')
PY
	# Asks for 2048 ids; the BPE stops at 1427 (no pair left twice).
	"$BIN" tokenizer train --vocab-size 2048 --out tokenizer.json tok.txt
	"$BIN" data tokenize --tokenizer tokenizer.json --out shards stories.jsonl arith.jsonl
	write_config
}

# gen_convs N SEED: synthetic conversations in OpenAI message format:
# greetings, who-are-you, stories (on request, or about an animal), who a given
# story is about, sums and differences of numbers up to 20 (half of them with
# reasoning_content, in thinking mode), goodbyes.
gen_convs() {
	python3 - stories.jsonl "$1" "$2" <<'PY'
import itertools, json, random, re, sys
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
stories = [json.loads(l)["text"] for l in itertools.islice(open(path), 20000)]
stories = [s for s in stories if len(s) < 420]
def animal_of(s):
    m = re.search(r"(?:was an? \w+ (\w+) (?:named|who))", s)
    return m.group(1) if m else None
def hero_of(s):
    m = re.search(r"named (\w+)\.", s) or re.match(r"(\w+) was an? ", s)
    return m.group(1) if m else None
by_animal = {}
for s in stories:
    a = animal_of(s)
    if a: by_animal.setdefault(a, []).append(s)
animals = sorted(by_animal)
GREET_U = ["Hi", "Hello", "Hello!", "Hi!", "Hey", "Hey there", "Good morning", "Hi, how are you?", "hello", "hi"]
GREET_A = ["Hello! I am a tiny story model. Ask me for a story.",
           "Hi! I can tell short stories and do small sums.",
           "Hello! Would you like a story?"]
WHO_U = ["Who are you?", "What are you?", "What can you do?", "What is your name?"]
WHO_A = "I am the tiny default model of dsv32. I can tell short stories and add small numbers."
BYE_U = ["Bye", "Goodbye", "Thank you!", "Thanks", "bye!"]
BYE_A = ["Goodbye! Have a nice day.", "You are welcome!", "Bye! Come back for another story."]
STORY_U = ["Tell me a story.", "Tell me a story", "Can you tell me a story?", "Write a short story.", "Please tell me a story."]
def conv(msgs, thinking=None):
    d = {"messages": msgs}
    if thinking is not None: d["thinking"] = thinking
    return d
def say(s, think=None):
    m = {"role": "assistant", "content": s}
    if think: m["reasoning_content"] = think
    return m
def user(s): return {"role": "user", "content": s}
def arith():
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    op = rng.choice("+-")
    if op == "-" and b > a: a, b = b, a
    r = a + b if op == "+" else a - b
    q = rng.choice([f"What is {a}{op}{b}?", f"What is {a} {op} {b}?", f"{a} {op} {b} = ?", f"Compute {a} {op} {b}."])
    word = "plus" if op == "+" else "minus"
    think = f"{a} {word} {b} is {r}." if rng.random() < 0.5 else None
    return [user(q), say(f"{a} {op} {b} = {r}.", think)], think is not None
def gen():
    k = rng.random()
    if k < 0.15: return conv([user(rng.choice(GREET_U)), say(rng.choice(GREET_A))])
    if k < 0.22: return conv([user(rng.choice(WHO_U)), say(WHO_A)])
    if k < 0.45: return conv([user(rng.choice(STORY_U)), say(rng.choice(stories))])
    if k < 0.60:
        a = rng.choice(animals)
        return conv([user(rng.choice([f"Tell me a story about a {a}.", f"A story about a {a}, please."])), say(rng.choice(by_animal[a]))])
    if k < 0.72:
        s = rng.choice(stories)
        h = hero_of(s)
        if h: return conv([user(s + "\nWho is this story about?"), say(f"The story is about {h}.")])
    if k < 0.92:
        msgs, th = arith()
        return conv(msgs, True if th else None)
    if k < 0.97:
        return conv([user(rng.choice(GREET_U)), say(rng.choice(GREET_A)), user(rng.choice(STORY_U)), say(rng.choice(stories))])
    return conv([user(rng.choice(BYE_U)), say(rng.choice(BYE_A))])
for _ in range(n): print(json.dumps(gen(), ensure_ascii=False))
PY
}

# write_config: DeepSeek-V3.2's architecture (MLA + lightning indexer + DeepSeekMoE),
# tiny: 4 layers (the first dense), hidden 128, 8 routed experts (top-2 in 4
# groups, top-2 groups) + 1 shared, index_topk 64; 1.44M parameters.
write_config() {
	cat >config.json <<'JSON'
{
  "architectures": [
    "DeepseekV32ForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "first_k_dense_replace": 1,
  "head_dim": 16,
  "hidden_act": "silu",
  "hidden_size": 128,
  "index_head_dim": 32,
  "index_n_heads": 4,
  "index_topk": 64,
  "initializer_range": 0.02,
  "intermediate_size": 256,
  "kv_lora_rank": 64,
  "layer_types": [
    "deepseek_sparse_attention",
    "deepseek_sparse_attention",
    "deepseek_sparse_attention",
    "deepseek_sparse_attention"
  ],
  "max_position_embeddings": 4096,
  "mlp_bias": false,
  "mlp_layer_types": [
    "dense",
    "sparse",
    "sparse",
    "sparse"
  ],
  "model_type": "deepseek_v32",
  "moe_intermediate_size": 64,
  "n_group": 4,
  "n_routed_experts": 8,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 4,
  "num_experts_per_tok": 2,
  "num_hidden_layers": 4,
  "num_key_value_heads": 4,
  "pad_token_id": null,
  "q_lora_rank": 64,
  "qk_head_dim": 48,
  "qk_nope_head_dim": 32,
  "qk_rope_head_dim": 16,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {
    "rope_theta": 10000.0,
    "rope_type": "default"
  },
  "routed_scaling_factor": 2.5,
  "tie_word_embeddings": false,
  "topk_group": 2,
  "transformers_version": "5.17.0",
  "use_cache": true,
  "v_head_dim": 32,
  "vocab_size": 1427
}
JSON
}

# Dense pre-training from random weights (--init-std 0.02): each document its
# own attention segment in rows of 128 tokens, 8 rows a step.
pretrain() {
	stage pretrain "${CAP_PRETRAIN:-1500}" "$BIN" train --stage pretrain --config config.json --data shards \
		--tokenizer tokenizer.json --out run/pre --seq-len 128 --batch 8 \
		--steps "${STEPS_PRETRAIN:-400}" --warmup 20 --lr 3e-3 --eval-every 50 --save-every 50 --keep 2 --no-bar "${BK[@]}"
}

# DSA stage 1 then stage 2, on documents concatenated into rows of 256 tokens,
# so a query sees up to 256 keys and index_topk = 64 selects among them.
warmup() {
	stage dsa-warmup "${CAP_WARMUP:-300}" "$BIN" train --stage dsa-warmup --model "$(newest run/pre)" --data shards \
		--tokenizer tokenizer.json --out run/warm --pack concat --seq-len 256 --batch 4 \
		--steps "${STEPS_WARMUP:-60}" --warmup 5 --lr 1e-3 --eval-every 30 --save-every 30 --keep 1 --no-bar "${BK[@]}"
}
sparse() {
	stage dsa-sparse "${CAP_SPARSE:-420}" "$BIN" train --stage dsa-sparse --model "$(newest run/warm)" --data shards \
		--tokenizer tokenizer.json --out run/sparse --pack concat --seq-len 256 --batch 4 \
		--steps "${STEPS_SPARSE:-80}" --warmup 5 --lr 5e-4 --eval-every 40 --save-every 40 --keep 1 --no-bar "${BK[@]}"
}

# SFT: loss on the assistant's tokens only, sparse attention.
sft() {
	stage sft "${CAP_SFT:-900}" "$BIN" train --stage sft --model "$(newest run/sparse)" --sft convs.jsonl \
		--tokenizer tokenizer.json --out run/sft --seq-len 256 --batch 8 --held-out 0.02 \
		--steps "${STEPS_SFT:-100}" --warmup 10 --lr 1e-3 --eval-every 50 --save-every 50 --keep 1 --no-bar "${BK[@]}"
}

# install: copy the final weights, config and tokenizer into the package that
# embeds them.
install() {
	local d
	d=$(newest run/sft)
	cp "$d/config.json" "$d/model.safetensors" "$d/tokenizer.json" "$ROOT/internal/defaultmodel/"
	echo "installed $d into $ROOT/internal/defaultmodel"
}

stages=("$@")
if [[ ${#stages[@]} == 0 ]]; then stages=(data pretrain warmup sparse sft install); fi
for s in "${stages[@]}"; do "$s"; done
