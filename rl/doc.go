// Package rl is GRPO as DeepSeek-V3.2 uses it (rl.md): group-relative
// advantages, the clipped token-level surrogate against the sampler's own
// log-probabilities, and V3.2's four stabilisers — the unbiased KL estimate
// (ρ·k3), off-policy sequence masking, keep routing (the training forward
// replays the sampler's expert ids) and keep sampling mask (π_θ renormalised
// over the token set the sampler's truncation kept).
//
// This file set holds the objective as graph functions over the policy's
// logits; rollouts come from engine (which records what the stabilisers
// need), rewards from env, updates from train.
//
// What it deliberately does not do: run a separate "old policy" forward pass
// (the sampler's processed log-prob is π_old everywhere, rl.md §7), or
// divide advantages by the group's std unless asked.
package rl
