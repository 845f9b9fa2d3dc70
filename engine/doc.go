// Package engine serves generations from one model: token ids in, token ids
// out. It keeps per-sequence caches (the MLA latent, rope key and indexer key
// of every position, as the model's Stepper lays them out), batches
// concurrent requests continuously (new requests join the running decode
// batch as rows free up; finished ones leave at once), prefills prompts in
// chunks between decode steps, and draws tokens with a sampler that can
// record what RL needs: log-probabilities under the sampling distribution,
// the token set the truncation kept, and each MoE layer's routed experts.
//
// Shapes come from small fixed sets — rows and capacity in powers of two,
// prefill chunks of 16, 64, 256, … tokens — so XLA compiles few graphs. A
// memory budget bounds the caches: a request that could never fit is refused
// with an error naming its size; one that fits later waits.
//
// What it deliberately does not do: tokenise, detokenise or match stop
// strings (the server does, and cancels through the context), or choose a
// backend (cmd does).
package engine
