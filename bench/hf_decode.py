"""The peer for `dsv32 bench decode`: Hugging Face transformers' DeepseekV32ForCausalLM
(bf16, sdpa) on the same random ~3B configuration, timed the same way: decode steps at
batch 1 and 8 after a cache of 4K/16K/32K tokens, and prefill of 8K/32K tokens.

Run on the GPU machine:  python3 bench/hf_decode.py --out hf.json
"""
import argparse, json, time

import torch
from transformers import DeepseekV32Config, DeepseekV32ForCausalLM

CONFIG = dict(  # identical to dsv32's "3b" preset (cmd/dsv32/bench.go)
    vocab_size=129280, hidden_size=2048, intermediate_size=5632, moe_intermediate_size=1024,
    num_hidden_layers=12, first_k_dense_replace=1, num_attention_heads=16, num_key_value_heads=16,
    q_lora_rank=768, kv_lora_rank=256, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    n_routed_experts=32, n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
    routed_scaling_factor=2.5, index_n_heads=16, index_head_dim=128, index_topk=2048,
    max_position_embeddings=163840, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=1, mlp_layer_types=["dense"] + ["sparse"] * 11,
)


def sync():
    torch.cuda.synchronize()


@torch.no_grad()
def prefill(model, ids, chunk):
    cache = None
    out = None
    for at in range(0, ids.shape[1], chunk):
        out = model(input_ids=ids[:, at:at + chunk], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
    return out, cache


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="hf.json")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--context", default="4096,16384,32768")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--prefill", default="8192,32768")
    ap.add_argument("--chunk", type=int, default=4096)
    a = ap.parse_args()
    cfg = DeepseekV32Config(**CONFIG)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(1)
    with torch.device("cuda"):
        model = DeepseekV32ForCausalLM(cfg).to(torch.bfloat16).eval()
    params = sum(p.numel() for p in model.parameters())
    rep = {"device": torch.cuda.get_device_name(), "params": params, "torch": torch.__version__,
           "decode": [], "prefill": []}
    print("params", params, flush=True)
    for C in [int(x) for x in a.context.split(",")]:
        for B in [int(x) for x in a.batch.split(",")]:
            try:
                ids = torch.randint(0, cfg.vocab_size, (B, C), device="cuda")
                out, cache = prefill(model, ids, a.chunk)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                times = []
                for i in range(a.steps + 2):
                    sync(); t0 = time.perf_counter()
                    out = model(input_ids=tok, past_key_values=cache, use_cache=True)
                    cache = out.past_key_values
                    tok = out.logits[:, -1].argmax(-1, keepdim=True)
                    sync(); dt = (time.perf_counter() - t0) * 1000
                    if i >= 2:
                        times.append(dt)
                times.sort()
                ms = times[len(times) // 2]
                rep["decode"].append({"batch": B, "pos": C, "step_ms": ms, "tokens_per_second": B / ms * 1000})
                print(f"decode batch {B} at {C}: {ms:.2f} ms/step", flush=True)
                del cache, out
            except torch.OutOfMemoryError as e:
                rep["decode"].append({"batch": B, "pos": C, "error": "out of memory"})
                print(f"decode batch {B} at {C}: OOM", flush=True)
            torch.cuda.empty_cache()
    for n in [int(x) for x in a.prefill.split(",")]:
        try:
            ids = torch.randint(0, cfg.vocab_size, (1, n), device="cuda")
            prefill(model, ids[:, :a.chunk], a.chunk)  # warm-up
            sync(); t0 = time.perf_counter()
            prefill(model, ids, a.chunk)
            sync(); ms = (time.perf_counter() - t0) * 1000
            rep["prefill"].append({"tokens": n, "ms": ms, "chunk": a.chunk})
            print(f"prefill {n}: {ms:.1f} ms", flush=True)
        except torch.OutOfMemoryError:
            rep["prefill"].append({"tokens": n, "error": "out of memory"})
        torch.cuda.empty_cache()
    with open(a.out, "w") as f:
        json.dump(rep, f, indent=2)


if __name__ == "__main__":
    main()
