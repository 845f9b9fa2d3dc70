package model

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	gm "github.com/gomlx/gomlx/ml/model"
)

// IndexerLoss selects the DSA training loss the forward pass also computes
// (dsa.md §9).
type IndexerLoss int

const (
	NoIndexerLoss     IndexerLoss = iota
	WarmupIndexerLoss             // stage 1: KL over every causal key, against dense attention
	SparseIndexerLoss             // stage 2: KL over the selected keys, against sparse attention
)

// Options are the modes of one forward pass. They are explicit arguments,
// never package state.
type Options struct {
	// Dense attends to every causal key (no top-k), as before DSA.
	Dense bool
	// CaptureTopK returns each layer's indexer selection, also in dense mode.
	CaptureTopK bool
	// CaptureHidden returns the embeddings and every layer's output.
	CaptureHidden bool
	// IndexerLoss adds each layer's indexer KL loss to the outputs.
	IndexerLoss IndexerLoss
	// Segments [B, T] (optional) restricts attention to keys of the same
	// segment: packed documents in one training row.
	Segments *graph.Node
	// Routes (optional), one [B, T, K] int32 node per MoE layer, forces the
	// routed experts (routing replay, rl.md §5).
	Routes []*graph.Node
	// OwnRoutes, with forced Routes, also returns the router's own choice
	// (Outputs.OwnRoutes), to measure how often replay overrides it.
	OwnRoutes bool
	// BalanceLoss adds each MoE layer's sequence-wise balance loss to the outputs.
	BalanceLoss bool
	// TokenMask [B, T] (optional, 1 = real token) keeps padding out of the
	// expert loads and the balance loss.
	TokenMask *graph.Node
	// NativeTopK selects the indexer's keys with the backend's TopK op (one
	// op on XLA) instead of radix select (many small vectorised ops; the right
	// choice on the Go backend, whose TopK sorts with a comparator graph).
	NativeTopK bool
	// DigitTopK, with NativeTopK, selects the keys of one-query rows
	// (decoding) by radix select over 8-bit digits (digitTopK: four wide
	// counting passes, running counts and a scatter) instead of the backend's
	// sort, and makes Stepper.ChainSample cut top-k and top-p the same way
	// instead of sorting the vocabulary. Which is faster depends on the
	// context length and the device (docs/engine.md); the result is the same.
	DigitTopK bool
	// RowWrites makes a decode step of several rows (one new token each)
	// write each row's cache slot with its own DynamicUpdateSlice, as a
	// one-row step does, instead of one scatter for the batch. Backends
	// without DynamicUpdateSlice ignore it. Which keeps XLA's caches in place
	// at batch 8 is what docs/engine.md's session 8 measures; the result is
	// the same.
	RowWrites bool
	// DeviceLoop makes Stepper.Chain run its n steps as one program, a loop
	// on the device, instead of n programs the host queues one after the
	// other: one launch and one wait for all n. A backend whose execution
	// waits for the device (go-xla as released) needs that to keep the
	// device busy. On backends that CanLoop, and with DigitTopK when
	// NativeTopK is set (Stepper.loopable says why); elsewhere Chain ignores
	// it (Stepper.DeviceLoop tells).
	DeviceLoop bool
	// LoopsInBackground, with DeviceLoop, compiles each device loop (one
	// program per kind, step count and cache shape) in the background on
	// first use instead of making that chain wait: until the program is
	// ready, chains run a program a step. On XLA a loop of a 3B model takes
	// seconds to compile, which a server should not make its requests wait
	// for. Stepper.WaitLoops waits for what is compiling. A loop builds
	// while others may: every build of the model only reads its store, but
	// one that adds variables (a trainer's first) must not overlap it.
	LoopsInBackground bool
	// LogitsAt (optional, [B] int32) computes the logits of one position per
	// row only, so Logits is [B, 1, V]: decoding and prefill chunks never pay
	// for the head on positions nobody samples from.
	LogitsAt *graph.Node
}

// Outputs of one forward pass.
type Outputs struct {
	Logits    *graph.Node   // [B, T, V]
	Hidden    []*graph.Node // hidden_0 (embeddings) … hidden_L (after the final norm), [B, T, D], with CaptureHidden
	TopK      []*graph.Node // per layer [B, T, min(k, S)] int32, in sparse mode or with CaptureTopK
	Routes    []*graph.Node // per MoE layer [B, T, K] int32: the experts each token used
	OwnRoutes []*graph.Node // per MoE layer [B, T, K]: the router's own choice under forced routes, with OwnRoutes
	Load      []*graph.Node // per MoE layer [E] float32: tokens routed to each expert
	Balance   []*graph.Node // per MoE layer scalar sequence-wise balance loss, with BalanceLoss
	Cache     []LayerCache  // updated caches, when a cache was given
	IndexerKL []*graph.Node // per layer scalar, with IndexerLoss
}

// Forward runs the model on tokens [B, T] at absolute positions pos [B, T].
// With cache (one LayerCache per layer, capacity C), the new keys are written
// into it and the queries read all of it; without, the tokens attend among
// themselves. This is the one definition of the architecture: prefill,
// decode, training and RL all call it.
func Forward(scope *gm.Scope, cfg *Config, tokens, pos *graph.Node, cache []LayerCache, opts Options) Outputs {
	var out Outputs
	dt := ComputeDType(scope)
	root := scope.At("model")
	embed := weight(root.At("embed_tokens"), tokens.Graph(), dt, nil, "weight", cfg.VocabSize, cfg.HiddenSize) // [V, D]
	h := graph.Gather(embed, graph.ExpandAxes(graph.ConvertDType(tokens, dtypes.Int32), -1))                   // [B, T, D]
	if opts.CaptureHidden {
		out.Hidden = append(out.Hidden, h)
	}
	cos, sin := ropeAngles(cfg, pos, dt) // [B, T, d_r/2]

	moeLayer := 0
	for i := range cfg.NumHiddenLayers {
		var lc *LayerCache
		if cache != nil {
			lc = &cache[i]
		}
		var forced *graph.Node
		if cfg.IsMoE(i) && opts.Routes != nil {
			forced = opts.Routes[moeLayer]
		}
		var lo layerOut
		var mo *moeOut
		h, lo, mo = block(root.At("layers").At("%d", i), cfg, i, h, pos, cos, sin, lc, forced, &opts)
		if lo.topK != nil && (opts.CaptureTopK || !opts.Dense) {
			out.TopK = append(out.TopK, lo.topK)
		}
		if lo.cache != nil {
			out.Cache = append(out.Cache, *lo.cache)
		}
		if lo.indexerKL != nil {
			out.IndexerKL = append(out.IndexerKL, lo.indexerKL)
		}
		if mo != nil {
			out.Routes = append(out.Routes, mo.ids)
			out.Load = append(out.Load, mo.load)
			if mo.own != nil {
				out.OwnRoutes = append(out.OwnRoutes, mo.own)
			}
			if mo.balance != nil {
				out.Balance = append(out.Balance, mo.balance)
			}
			moeLayer++
		}
		if opts.CaptureHidden && i < cfg.NumHiddenLayers-1 {
			out.Hidden = append(out.Hidden, h)
		}
	}
	h = rmsNorm(root.At("norm"), h, cfg.RMSNormEps) // [B, T, D]
	if opts.CaptureHidden {
		out.Hidden = append(out.Hidden, h)
	}
	if opts.LogitsAt != nil {
		B := h.Shape().Dim(0)
		at := graph.Concatenate([]*graph.Node{
			graph.Iota(h.Graph(), shapes.Make(dtypes.Int32, B, 1), 0),
			graph.Reshape(graph.ConvertDType(opts.LogitsAt, dtypes.Int32), B, 1)}, -1) // [B, 2]
		h = graph.ExpandAxes(graph.Gather(h, at), 1) // [B, 1, D]
	}
	out.Logits = linear(scope.At("lm_head"), h, cfg.VocabSize) // [B, T or 1, V]
	return out
}

// block is one pre-norm decoder layer: h + MLA(norm(h)), then h + FFN(norm(h)).
// It returns the new hidden state, the attention extras and, for MoE layers,
// what the router did.
func block(scope *gm.Scope, cfg *Config, layer int, h, pos, cos, sin *graph.Node, cache *LayerCache, forced *graph.Node, opts *Options) (*graph.Node, layerOut, *moeOut) {
	x := rmsNorm(scope.At("input_layernorm"), h, cfg.RMSNormEps)
	a, lo := attention(scope.At("self_attn"), cfg, x, pos, cos, sin, cache, opts)
	h = graph.Add(h, a)
	x = rmsNorm(scope.At("post_attention_layernorm"), h, cfg.RMSNormEps)
	var f *graph.Node
	var mo *moeOut
	if cfg.IsMoE(layer) {
		var r moeOut
		f, r = moe(scope.At("mlp"), cfg, x, forced, opts)
		mo = &r
	} else {
		f = swiGLU(scope.At("mlp"), x, cfg.IntermediateSize)
	}
	return graph.Add(h, f), lo, mo
}

// paramDTypeKey is the store parameter holding the weights' dtype.
const paramDTypeKey = "dsv32_dtype"

// ParamDType is the dtype of the model's weights in this store (float32 unless set).
func ParamDType(scope *gm.Scope) dtypes.DType {
	if v, ok := scope.Store().GetParam("/" + paramDTypeKey); ok {
		if dt, ok := v.(dtypes.DType); ok {
			return dt
		}
	}
	return dtypes.Float32
}

// SetParamDType sets the dtype new weights are created with.
func SetParamDType(store *gm.Store, dt dtypes.DType) {
	store.SetParam("/"+paramDTypeKey, dt)
}

// computeDTypeKey is the store parameter holding the activations' dtype.
const computeDTypeKey = "dsv32_compute_dtype"

// ComputeDType is the dtype activations and caches are computed in: the
// weights' dtype unless set (training keeps float32 master weights and
// computes in bf16 on the GPU).
func ComputeDType(scope *gm.Scope) dtypes.DType {
	if v, ok := scope.Store().GetParam("/" + computeDTypeKey); ok {
		if dt, ok := v.(dtypes.DType); ok {
			return dt
		}
	}
	return ParamDType(scope)
}

// SetComputeDType sets the dtype of activations and caches.
func SetComputeDType(store *gm.Store, dt dtypes.DType) {
	store.SetParam("/"+computeDTypeKey, dt)
}
