// Package model is DeepSeek-V3.2 as GoMLX graph code: the one definition of
// the architecture that inference, training and RL all call.
//
// Reading order, as in DeepSeek's inference/model.py:
//
//	config.go   Config from a Hugging Face config.json (both rope spellings), Validate, derived values
//	norm.go     weights by HF name, linear maps, RMSNorm, LayerNorm, SwiGLU
//	rope.go     RoPE and YaRN; interleaved (MLA) and half-split (indexer) layouts
//	indexer.go  the lightning indexer: keys, scores, top-k, the selection mask
//	mla.go      Multi-head Latent Attention: expanded, absorbed and gathered forms, caches
//	moe.go      DeepSeekMoE: group-limited sigmoid router, routed and shared experts
//	model.go    Forward: embedding, blocks, final norm, head; Options and Outputs
//	loss.go     next-token cross-entropy and the indexer's KL (DSA training)
//	weights.go  the weight table: HF names ↔ store variables, random init, Load, Save
//	params.go   parameter counts and cache widths (dsv32 info)
//	run.go      executing Forward: one-shot prefill, and a cache-carrying Stepper
//
// Glossary: MLA is Multi-head Latent Attention (keys and values compressed
// into one latent c per token); DSA is DeepSeek Sparse Attention; the
// Indexer is DSA's lightning indexer, which scores every earlier key so that
// attention reads only the top-k; the latent cache holds c, the rope key and
// the indexer key per token and layer — never expanded per-head K/V.
//
// Modes are explicit Options (dense or sparse attention, captured top-k,
// forced expert routes, DSA losses), never package state. Weights live in a
// GoMLX store under paths that mirror the HF names.
//
// What it deliberately does not do: tokenise text, sample, batch requests or
// choose a backend — those belong to tokenizer, engine and cmd. It does not
// emulate DeepSeek's FP8 activation kernels or the indexer's Hadamard
// rotation (dsa.md §4.5); FP8 weights are dequantised on load.
package model
