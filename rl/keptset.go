package rl

import (
	"github.com/dsv32/dsv32/engine"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
)

// Truncation is the sampler's truncation of the vocabulary (engine.SampleParams'
// TopP, TopK and MinP; 0 turns each off). The sampling-mask monitor re-applies
// it to the trainer's logits.
type Truncation struct {
	TopP float64 // nucleus: the smallest prefix with mass ≥ TopP (0 or 1: off)
	TopK int     // at most TopK tokens (0: off)
	MinP float64 // tokens with p ≥ MinP·p_max (0: off)
}

// TruncationOf is the truncation a sampler with these parameters applies.
func TruncationOf(p engine.SampleParams) Truncation {
	return Truncation{TopP: p.TopP, TopK: p.TopK, MinP: p.MinP}
}

func (t Truncation) values() []float32 {
	return []float32{float32(t.TopP), float32(t.TopK), float32(t.MinP)}
}

// KeptSetMismatch is the sampling-mask monitor (rl.md §6, §10): it re-applies
// the sampler's truncation to logits [B, T, V] at temperature temp, exactly as
// engine/sampler.go orders it (descending probability, ties to the lower id;
// top-k, then min-p, then top-p over the sorted prefix), and says where the
// set it keeps differs from the recorded one, kept [B, T, K] (−1 padded; a
// row of −1 is the whole vocabulary). trunc is float32 [3]: top-p, top-k,
// min-p (0: off), a graph input so one compiled step serves any sampler.
//
// It needs no sort: the re-applied set equals the recorded set K (n ids) iff
// (1) K is the trainer's top-n — its last member in the sampler's order
// (smallest logit, largest id among ties) precedes the first non-member
// (largest logit, smallest id) — and (2) the truncation stops after exactly
// n tokens, which, given (1), depends only on n, the mass of K, the
// probability of K's last member and the count of tokens above the min-p
// floor. Both are a handful of reductions over V.
//
// Returns differ [B, T] (bool), the trainer's probability mass on the
// recorded set, mass [B, T] (1 where the whole vocabulary was kept), and the
// recorded set's size |K_t|, size [B, T] (float32; V where untruncated).
func KeptSetMismatch(logits, kept, trunc *graph.Node, temp float64) (differ, mass, size *graph.Node) {
	g := logits.Graph()
	f32 := dtypes.Float32
	dims := logits.Shape().Dimensions
	B, T, V := dims[0], dims[1], dims[2]
	x := graph.StopGradient(graph.ConvertDType(logits, f32)) // ranks: the raw logits (τ > 0 keeps the order)
	z := x
	if temp != 1 {
		z = graph.MulScalar(x, 1/temp)
	}
	lp := graph.LogSoftmax(z, -1)
	p := graph.Exp(lp)
	in := keptMask(kept, V) // [B, T, V]
	out := graph.LogicalNot(in)
	expand := func(v *graph.Node) *graph.Node { return graph.BroadcastToDims(graph.ExpandAxes(v, -1), B, T, V) }
	zero := graph.ScalarZero(g, f32)

	n := graph.ReduceSum(graph.ConvertDType(in, f32), -1) // [B, T]
	mass = graph.ReduceSum(graph.Where(in, p, zero), -1)

	// (1) K is the top-n of the trainer's order.
	ids := graph.Iota(g, shapes.Make(dtypes.Int32, B, T, V), 2)
	minIn := graph.ReduceMin(graph.Where(in, x, graph.Infinity(g, f32, 1)), -1)
	maxOut := graph.ReduceMax(graph.Where(out, x, graph.Infinity(g, f32, -1)), -1)
	atMin := graph.LogicalAnd(in, graph.Equal(x, expand(minIn)))
	atMax := graph.LogicalAnd(out, graph.Equal(x, expand(maxOut)))
	lastIn := graph.ReduceMax(graph.Where(atMin, ids, graph.Scalar(g, dtypes.Int32, -1)), -1)
	firstOut := graph.ReduceMin(graph.Where(atMax, ids, graph.Scalar(g, dtypes.Int32, V)), -1)
	top := graph.LogicalOr(graph.GreaterThan(minIn, maxOut),
		graph.LogicalAnd(graph.Equal(minIn, maxOut), graph.LessThan(lastIn, firstOut)))

	// (2) The truncation keeps exactly n tokens.
	param := func(i int) *graph.Node {
		return graph.BroadcastToDims(graph.Reshape(graph.Slice(graph.ConvertDType(trunc, f32), graph.AxisElem(i))), B, T)
	}
	topP, topK, minP := param(0), param(1), param(2) // [B, T] each
	fV := graph.Scalar(g, f32, V)
	one := graph.Scalar(g, f32, 1)
	keep := graph.Where(graph.GreaterThan(topK, zero), graph.Min(topK, fV), graph.BroadcastToDims(fV, B, T))
	floor := graph.Add(graph.ReduceMax(lp, -1), graph.Log(graph.Max(minP, graph.Scalar(g, f32, 1e-30)))) // [B, T]
	above := graph.ReduceSum(graph.ConvertDType(graph.GreaterOrEqual(lp, expand(floor)), f32), -1)
	keep = graph.Where(graph.GreaterThan(minP, zero), graph.Max(graph.Min(keep, above), one), keep)
	pLast := graph.ReduceMax(graph.Where(atMin, p, zero), -1)
	before := graph.Sub(mass, pLast) // mass of K without its last member
	topPOn := graph.LogicalAnd(graph.GreaterThan(topP, zero), graph.LessThan(topP, one))
	stopsAtN := graph.LogicalAnd(graph.LogicalAnd(graph.LessOrEqual(n, keep), graph.LessThan(before, topP)),
		graph.LogicalOr(graph.GreaterOrEqual(mass, topP), graph.Equal(n, keep)))
	count := graph.Where(topPOn, stopsAtN, graph.Equal(n, keep))
	return graph.LogicalNot(graph.LogicalAnd(top, count)), mass, n
}
