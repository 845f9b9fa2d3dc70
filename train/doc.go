// Package train trains DeepSeek-V3.2 models: pre-training, DeepSeek Sparse
// Attention's two stages and SFT, over the one model definition (package
// model) with GoMLX's autodiff.
//
// Reading order:
//
//	config.go   Stage (pretrain, dsa-warmup, dsa-sparse, sft) and what each trains; Config, the
//	            per-stage defaults, the warm-up + cosine schedule
//	trainer.go  Trainer: the loss of each stage, the gradient graph over the stage's variables,
//	            accumulation, global-norm clipping and AdamW written in the graph; Eval
//	balance.go  MoE balancing: the auxiliary-loss-free bias update, expert-load statistics
//	ckpt.go     checkpoints (HF weights + optimizer state + state.json), atomic, kept last K; Restore
//	run.go      Run: the loop — batches from a Source, evaluation, metrics.jsonl, progress bar, saves
//	plot.go     the loss curve as PNG
//	sft.go      SFT data: OpenAI-format JSONL → the V3.2 chat render → tokens with an
//	            assistant-only loss mask; SFTPacker
//
// The stages (dsa.md §9). pretrain: dense attention, every weight but the
// indexers, on LM + α·Σ balance. dsa-warmup (stage 1): dense attention, only
// the indexers, on Σ_l KL(p_t ‖ softmax(I_t)) over all causal keys. dsa-sparse
// (stage 2): top-k attention, every weight, on LM + Σ_l KL over the selected
// keys; the model detaches the indexer's inputs, so the LM loss never reaches
// the indexer and the KL reaches nothing else. sft: as stage 2, with the LM
// loss on assistant tokens only. Only the stage's trainable variables that
// the graph uses are differentiated. The router's e_score_correction_bias is
// never trained by gradients: after each step it moves by γ·sign(mean load −
// load_e) (DeepSeek-V3's auxiliary-loss-free balancing).
//
// The KL losses enter the total as the model's sums over query positions
// divided by B·T (a constant factor), so the loss scale does not grow with
// the batch and the global clipping norm is not dominated by the KL.
//
// Optimizer: AdamW in PyTorch's form (decoupled decay p·(1−lr·λ) before the
// bias-corrected Adam update), moments in float32 under /optimizer in the
// model's store. Weight decay applies to matrices only — not to norms,
// biases or the token embeddings. Gradients are clipped to a global norm
// (torch's clip_grad_norm_ formula) after averaging the micro-batches. The
// norm is global over every trainable weight, so in stage 2 and SFT one clip
// factor scales the LM and the KL gradients alike; Adam normalises a common
// scale away, which keeps the two losses' updates nearly independent.
// Weights stay float32 masters; Config.DType "bf16" computes activations in
// bf16 (casts in the graph; gradients flow back to the masters).
//
// Determinism: the graphs draw no random numbers; the data order is a
// function of the seed and the data position. On the Go backend a run
// resumed from a checkpoint is bit-identical to one that never stopped
// (TestResumeBitExact), and a save that fails or is SIGKILLed half-way
// leaves the previous checkpoint intact (TestKillWhileSaving,
// TestSIGKILLWhileSaving). XLA on a GPU is not bit-deterministic (two
// identical runs already differ), so there a resumed run is the same run
// statistically, not bitwise.
//
// Gradient accumulation is token-weighted: each micro-batch's LM loss is
// scaled by its share of the step's counted targets, so Accum micro-batches
// take the step one batch of all their rows would (up to rounding), however
// unevenly an SFT mask falls (TestAccumulation). The KL and balance terms,
// per-token means already, are averaged over micro-batches.
//
// What it deliberately does not do: no distributed or sharded training (one
// device; GoMLX's SPMD is for later), no loss scaling (bf16 needs none), no
// dropout, no multi-token-prediction loss (the MTP block is not loaded), no
// packing of SFT conversations across rows (a conversation longer than a
// row is truncated), and no RL — package rl builds on this one. It never
// chooses a backend: the caller passes one.
package train
