package model

import (
	"github.com/gomlx/compute/shapes"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	gm "github.com/gomlx/gomlx/ml/model"
)

// The lightning indexer of DeepSeek Sparse Attention (dsa.md §4): a cheap
// multi-head ReLU score of every earlier key, whose top-k keys are the only
// ones main attention reads.

// indexerKeys computes the indexer key of each new token: LayerNorm(W_Ik·x)
// with half-split RoPE on its first d_r dims. x [B, T, D] → [B, T, d_I].
func indexerKeys(scope *gm.Scope, cfg *Config, x, cos, sin *graph.Node) *graph.Node {
	k := linear(scope.At("wk"), x, cfg.IndexHeadDim) // [B, T, d_I]
	k = layerNorm(scope.At("k_norm"), k, 1e-6)       // [B, T, d_I]
	return ropeFront(k, cfg.QKRopeHeadDim, cos, sin) // [B, T, d_I]
}

// ropeFront applies half-split RoPE to the first d_r dims of x's last axis.
func ropeFront(x *graph.Node, dr int, cos, sin *graph.Node) *graph.Node {
	rot := graph.SliceAxis(x, -1, graph.AxisRange(0, dr))
	pass := graph.SliceAxis(x, -1, graph.AxisRangeToEnd(dr))
	return graph.Concatenate([]*graph.Node{ropeHalf(rot, cos, sin), pass}, -1)
}

// indexerScores returns I[b,t,s] = Σ_j w[t,j]·H_I^-1/2·ReLU(d_I^-1/2·q_I[t,j]·k_I[s]),
// −∞ where key s is not allowed (dsa.md §4.3). Inputs are the normed hidden
// state x [B, T, D], MLA's qr [B, T, r_q], the keys [B, S, d_I] and the
// causal mask allowed [B, T, S]. The inputs are detached: the indexer learns
// only from its own KL loss (dsa.md §9). Result [B, T, S], float32.
func indexerScores(scope *gm.Scope, cfg *Config, x, qr, keys, allowed, cos, sin *graph.Node) *graph.Node {
	x, qr = graph.StopGradient(x), graph.StopGradient(qr)
	dims := x.Shape().Dimensions
	B, T := dims[0], dims[1]
	HI, dI := cfg.IndexNumHeads, cfg.IndexHeadDim
	q := linear(scope.At("wq_b"), qr, HI*dI)                                             // [B, T, H_I·d_I]
	q = graph.Reshape(q, B, T, HI, dI)                                                   // [B, T, H_I, d_I]
	q = ropeFront(q, cfg.QKRopeHeadDim, cos, sin)                                        // [B, T, H_I, d_I]
	w := linear(scope.At("weights_proj"), x, HI)                                         // [B, T, H_I]
	w = graph.MulScalar(graph.ConvertDType(w, dtypes.Float32), 1/math.Sqrt(float64(HI))) // [B, T, H_I]
	q32 := graph.ConvertDType(q, dtypes.Float32)
	k32 := graph.ConvertDType(keys, dtypes.Float32)
	s := graph.Einsum("bthd,bsd->bths", q32, k32)                                                            // [B, T, H_I, S]
	s = graph.Max(graph.MulScalar(s, 1/math.Sqrt(float64(dI))), graph.ScalarZero(x.Graph(), dtypes.Float32)) // [B, T, H_I, S]
	idx := graph.Einsum("bth,bths->bts", w, s)                                                               // [B, T, S]
	return graph.Where(allowed, idx, graph.Infinity(x.Graph(), dtypes.Float32, -1))
}

// topKMethod is how selectTopK finds the top k.
type topKMethod int

const (
	topKRadix  topKMethod = iota // topKMask: 32 one-bit passes, the Go backend's choice
	topKNative                   // the backend's TopK op: a sort on XLA
	topKDigits                   // digitTopK: four 8-bit passes, for one-query rows on XLA
)

// selectTopK picks the min(k, S) highest-scoring keys per query (ties: lower
// index first). scores [B, T, S] → indices [B, T, k'] int32 and the selection
// as a mask [B, T, S].
func selectTopK(scores *graph.Node, k int, method topKMethod) (idx, mask *graph.Node) {
	S := scores.Shape().Dim(-1)
	k = min(k, S)
	switch {
	case k == S:
	case method == topKNative:
		_, idx = graph.TopK(graph.StopGradient(scores), k, -1)
		idx = graph.ConvertDType(idx, dtypes.Int32)
		return idx, selectionMask(idx, S)
	case method == topKDigits:
		return digitTopK(scores, k)
	}
	mask = topKMask(scores, k)
	return maskIndices(mask, k), mask
}

// selectionMask turns top-k indices [B, T, k'] into a boolean [B, T, S].
func selectionMask(idx *graph.Node, S int) *graph.Node {
	g := idx.Graph()
	dims := idx.Shape().Dimensions
	B, T, K := dims[0], dims[1], dims[2]
	full := shapes.Make(dtypes.Int32, B, T, K, 1)
	coords := graph.Concatenate([]*graph.Node{
		graph.Iota(g, full, 0), graph.Iota(g, full, 1), graph.Reshape(idx, B, T, K, 1),
	}, -1) // [B, T, k', 3]
	ones := graph.Ones(g, shapes.Make(dtypes.Float32, B, T, K))
	zeros := graph.Zeros(g, shapes.Make(dtypes.Float32, B, T, S))
	hit := graph.ScatterMax(zeros, coords, ones, false, true) // [B, T, S]
	return graph.GreaterThan(hit, graph.ScalarZero(g, dtypes.Float32))
}
