"""A reference for the DSA experiment's retrieval curve (docs/dsa-experiment.md): transformers'
DeepseekV32ForCausalLM of the experiment's own config.json, trained by PyTorch on the same token
shards, with the retrieval accuracy of held-out documents measured every --every steps. If this
model learns the retrieval where dsv32's pre-training does not, the gap is dsv32's; if neither
does, the budget or the task is.

Differences from `dsv32 train`, on purpose and small: rows are the documents concatenated (EOS
between them, attention across them, as GPT-style pre-training does; dsv32 keeps each document
its own attention segment), and the indexer is switched off by index_topk = the row length
(dense attention, as dsv32's pre-training).

Run on the GPU machine after `scripts/dsa-experiment.sh ... STOP_AFTER=pretrain` wrote OUTDIR/data:

    dsv32 data synth --task retrieval <the script's retrieval flags> --seed 1000003 --n 50 \\
        --tokens 1024 --tokenizer OUTDIR/data/tokenizer.json --out eval.jsonl
    python3 bench/hf_retrieval_probe.py --data OUTDIR/data --eval eval.jsonl --out hf_probe.json

Without --eval it reports the training loss only: with `ONLY_INDUCTION=1 N_INDUCTION=50000
STOP_AFTER=pretrain scripts/dsa-experiment.sh ...` data (a pseudo-word sequence told twice) that
loss falls from about 5.4 towards half of it once the model has an induction head, so the same
data through `dsv32 train` and through this reference tells whether dsv32's stack forms one as
transformers' does.

Only the standard library is needed to read shards (`python3 bench/hf_retrieval_probe.py
--check-data DIR` prints what it reads, without torch).
"""
import argparse, json, math, os, struct, sys, time


def read_documents(shard_dir):
    """The documents of a `dsv32 data tokenize` directory, as (shard bytes, start, end) in tokens."""
    idx = json.load(open(os.path.join(shard_dir, "index.json")))
    if idx.get("format") != "dsv32-tokens" or idx.get("dtype") != "uint32le":
        raise SystemExit(f"{shard_dir}: not a dsv32-tokens uint32le dataset")
    shards, docs = [], []
    for s in idx["shards"]:
        data = open(os.path.join(shard_dir, s["name"]), "rb").read()
        if len(data) != 4 * s["tokens"]:
            raise SystemExit(f"{s['name']}: {len(data)} bytes, want {4 * s['tokens']}")
        start = 0
        for end in s["doc_ends"]:
            docs.append((len(shards), start, end))
            start = end
        shards.append(data)
    return idx, shards, docs


def tokens_of(shards, doc):
    shard, start, end = doc
    return list(struct.unpack_from(f"<{end - start}I", shards[shard], 4 * start))


def rows(shards, docs, seq, seed):
    """Endless rows of seq+1 tokens: the documents in a seeded random order, concatenated."""
    import random
    rng, buf, epoch = random.Random(seed), [], 0
    while True:
        order = list(range(len(docs)))
        rng.shuffle(order)
        for i in order:
            buf.extend(tokens_of(shards, docs[i]))
            while len(buf) >= seq + 1:
                yield buf[: seq + 1]
                buf = buf[seq + 1:]
        epoch += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="OUTDIR/data of scripts/dsa-experiment.sh (config.json, tokenizer.json, shards/)")
    ap.add_argument("--eval", help="held-out retrieval documents (dsv32 data synth --task retrieval) as JSONL")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--every", type=int, default=1000, help="evaluate every N steps")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=7.0, help="stop (and evaluate) after this long")
    ap.add_argument("--out", default="hf_probe.json")
    ap.add_argument("--check-data", metavar="DIR", help="only read the shards in DIR and print a summary")
    a = ap.parse_args()

    if a.check_data:
        idx, shards, docs = read_documents(a.check_data)
        first = tokens_of(shards, docs[0])
        r = next(rows(shards, docs, 16, 1))
        print(f"{len(docs)} documents, {idx['tokens']} tokens, eos {idx['eos']}; "
              f"first document {len(first)} tokens ending {first[-3:]}; a row of 17: {r}")
        return

    import torch
    import torch.nn.functional as F
    from tokenizers import Tokenizer
    from transformers import DeepseekV32Config, DeepseekV32ForCausalLM

    torch.manual_seed(a.seed)
    cfg = json.load(open(os.path.join(a.data, "config.json")))
    cfg["index_topk"] = a.seq  # every causal key: dense attention, as dsv32's pre-training
    model = DeepseekV32ForCausalLM(DeepseekV32Config.from_dict(cfg)).cuda()
    tok = Tokenizer.from_file(os.path.join(a.data, "tokenizer.json"))
    _, shards, docs = read_documents(os.path.join(a.data, "shards"))
    stream = rows(shards, docs, a.seq, a.seed)

    evals = []
    for line in open(a.eval) if a.eval else []:
        ex = json.loads(line)
        p = tok.encode(ex["prompt"]).ids
        full = tok.encode(ex["prompt"] + " " + ex["answer"]).ids
        if full[: len(p)] != p:
            raise SystemExit("the prompt's tokens are not a prefix of prompt + answer")
        evals.append((full, len(p)))

    def evaluate():
        if not evals:
            return {}
        model.eval()
        hits = right = total = 0
        loss = 0.0
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for full, n in evals:
                ids = torch.tensor([full], device="cuda")
                logits = model(ids).logits[0, n - 1: len(full) - 1].float()
                want = ids[0, n:]
                ok = logits.argmax(-1) == want
                hits += int(ok.all())
                right += int(ok.sum())
                total += len(want)
                loss += float(F.cross_entropy(logits, want, reduction="sum"))
        model.train()
        return {"accuracy": hits / len(evals), "answer_tokens": right / total, "answer_loss": loss / total}

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    report = {"config": cfg, "args": vars(a), "curve": [], "train": []}
    t0 = time.time()
    for step in range(1, a.steps + 1):
        batch = torch.tensor([next(stream) for _ in range(a.batch)], device="cuda")
        for g in opt.param_groups:
            g["lr"] = lr_at(step - 1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            try:
                logits = model(batch[:, :-1]).logits
            except Exception as e:  # an experts kernel this machine lacks: the plain loop instead
                if step > 1:
                    raise
                print(f"first step failed ({e}); experts implementation: eager", flush=True)
                model.config._experts_implementation = "eager"
                logits = model(batch[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        done = time.time() - t0 > 60 * a.minutes
        if step % 100 == 0:
            report["train"].append({"step": step, "loss": float(loss), "s": time.time() - t0})
            if not evals:
                print(json.dumps(report["train"][-1]), flush=True)
        if step % a.every == 0 or step == a.steps or done:
            r = {"step": step, "tokens": step * a.batch * a.seq, **evaluate()}
            report["curve"].append(r)
            print(json.dumps(r), flush=True)
            json.dump(report, open(a.out, "w"), indent=1)
        if done:
            break
    json.dump(report, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
