"""The peer for `dsv32 bench train`: one PyTorch training step of Hugging Face transformers'
DeepseekV32ForCausalLM on the same random ~1.0B configuration ("1b-train" in
cmd/dsv32/bench_train.go) and the same batch, timed the same way.

A step is: forward (sdpa attention), next-token cross-entropy over all B*T targets, backward,
torch.nn.utils.clip_grad_norm_(1.0), torch.optim.AdamW(fused=True, betas (0.9, 0.95),
weight_decay 0.1), zero_grad; the step ends with loss.item() (a host sync, as ours).

Variants (each in a fresh model):
  autocast  float32 weights, torch.autocast(bfloat16)   -- the match to dsv32 (bf16 compute, f32 masters)
  bf16      bfloat16 weights and AdamW state            -- PyTorch's cheaper, less accurate option

The MoE experts backend is transformers' "grouped_mm" when it runs, else "eager" (recorded).
Model FLOPs per token use the formula of bench_train.go, computed here from the module's own
parameters (an independent count).

Run on the GPU machine:  python3 bench/hf_train.py --out hf_train.json      (about a minute)
"""
import argparse, gc, json, math, time, traceback

import torch
import torch.nn.functional as F
from transformers import DeepseekV32Config, DeepseekV32ForCausalLM

LAYERS = 8
CONFIG = dict(  # identical to dsv32's "1b-train" preset (cmd/dsv32/bench_train.go)
    vocab_size=129280, hidden_size=2048, intermediate_size=5632, moe_intermediate_size=512,
    num_hidden_layers=LAYERS, first_k_dense_replace=1, num_attention_heads=16, num_key_value_heads=16,
    q_lora_rank=768, kv_lora_rank=256, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
    routed_scaling_factor=2.5, index_n_heads=16, index_head_dim=128, index_topk=2048,
    max_position_embeddings=163840, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=1, mlp_layer_types=["dense"] + ["sparse"] * (LAYERS - 1),
)
PEAK = 989.4e12  # H200 SXM dense bf16 tensor-core peak, FLOP/s
FORMULA = ("6*N_mm + 6*L*H*(d_qk+d_v)*nbar; N_mm = weights of every matmul a token passes through "
           "(attention q_a,q_b,kv_a,kv_b,o; dense MLP; router; shared + top-k routed experts; lm_head), "
           "no embedding lookup, norms, biases or indexer; nbar = (T+1)/2 (causal)")


def model_flops(model, cfg, T):
    """Model FLOPs per trained token, the formula of bench_train.go (pretrain: dense attention)."""
    k, E = cfg.num_experts_per_tok, cfg.n_routed_experts
    n_mm = 0.0
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embed_tokens" in name or ".indexer." in name:
            continue
        n = float(p.numel())
        if ".mlp.experts." in name:  # fused [E, ...] routed experts: a token visits k of E
            n *= k / E
        n_mm += n
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    attn = 6 * L * H * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim) * (T + 1) / 2
    return 6 * n_mm + attn, n_mm, attn


def set_experts(model, impl):
    if hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation(impl)
            return
        except Exception:
            pass
    model.config._experts_implementation = impl


def run_variant(name, a, cfg, impl):
    torch.manual_seed(a.seed)
    with torch.device("cuda"):
        model = DeepseekV32ForCausalLM(cfg)
    if name == "bf16":
        model = model.to(torch.bfloat16)
    model.train()
    set_experts(model, impl)
    impl = str(getattr(model.config, "_experts_implementation", impl))  # what the model will use
    params = sum(p.numel() for p in model.parameters())
    per_expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size
    n_moe = sum(1 for t in cfg.mlp_layer_types if t == "sparse")
    activated = params - n_moe * (cfg.n_routed_experts - cfg.num_experts_per_tok) * per_expert
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    B, T, V = a.batch, a.seq_len, cfg.vocab_size
    g = torch.Generator(device="cuda").manual_seed(a.seed)
    batches = [torch.randint(0, V, (B, T + 1), device="cuda", generator=g) for _ in range(2)]
    autocast = name == "autocast"

    def step(ids):
        x, y = ids[:, :-1], ids[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    losses, times = [], []
    first = None
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses.append(step(batches[i % 2]))
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt
        if i >= a.warmup:
            times.append(dt * 1000)
        print(f"  {name}/{impl} step {i + 1}: {dt * 1000:.1f} ms loss {losses[-1]:.4f}", flush=True)
    flops, n_mm, attn = model_flops(model, cfg, T)
    ms = sum(times) / len(times)
    st = sorted(times)
    tps = B * T / (ms / 1000)
    rep = {
        "impl": f"transformers {__import__('transformers').__version__} DeepseekV32ForCausalLM (torch {torch.__version__}, sdpa, experts {impl})",
        "device": torch.cuda.get_device_name(), "stage": "pretrain (dense: index_topk >= T)",
        "dtype": "bf16 autocast, float32 master weights" if autocast else "bf16 weights and optimizer state",
        "params": params, "params_activated": activated, "batch": B, "seq_len": T, "tokens_per_step": B * T,
        "warmup": a.warmup, "steps": a.steps, "first_step_s": first, "step_ms": ms, "step_ms_median": st[len(st) // 2],
        "step_ms_min": st[0], "steps_ms": times, "tokens_per_s": tps, "flops_per_token": flops,
        "matmul_params_per_token": n_mm, "attn_flops_per_token": attn, "flops_formula": FORMULA,
        "model_tflops_per_s": tps * flops / 1e12, "peak_tflops": PEAK / 1e12, "mfu": tps * flops / PEAK, "loss": losses,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30, "variant": name, "experts_implementation": impl,
        "notes": "forward computes the DSA indexer (no_grad) as transformers always does; loss over all B*T targets; "
                 "AdamW(fused=True), clip_grad_norm_(1.0); step timed host-side ending with loss.item()",
    }
    print(f"{name}/{impl}: {ms:.1f} ms/step  {tps:.0f} tokens/s  {rep['model_tflops_per_s']:.1f} TFLOP/s  "
          f"MFU {100 * rep['mfu']:.1f}%  peak mem {rep['peak_memory_gb']:.1f} GiB", flush=True)
    del model, opt, batches
    return rep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="hf_train.json")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", default="autocast,bf16")
    ap.add_argument("--experts", default="grouped_mm,eager", help="experts backends to try, in order")
    a = ap.parse_args()
    cfg = DeepseekV32Config(**CONFIG)
    cfg._attn_implementation = "sdpa"
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "variants": [], "errors": []}
    for name in a.variants.split(","):
        for impl in a.experts.split(","):
            try:
                out["variants"].append(run_variant(name, a, cfg, impl))
                break
            except Exception as e:  # e.g. grouped_mm refusing float32 weights under autocast
                msg = f"{name}/{impl}: {type(e).__name__}: {e}"
                print("FAILED", msg, flush=True)
                traceback.print_exc()
                out["errors"].append(msg[:2000])
            finally:
                gc.collect()
                torch.cuda.empty_cache()
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
