package model

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
)

// Losses: next-token cross-entropy, and the indexer's KL (dsa.md §9).

// LMLoss is the mean next-token cross-entropy: logits [B, T, V] predict
// targets [B, T] where weights [B, T] (float, 1 = counted; nil = all) say
// which positions count. Computed in float32.
func LMLoss(logits, targets, weights *graph.Node) *graph.Node {
	g := logits.Graph()
	lp := graph.LogSoftmax(graph.ConvertDType(logits, dtypes.Float32), -1) // [B, T, V]
	dims := targets.Shape().Dimensions
	at := graph.Concatenate([]*graph.Node{
		graph.Iota(g, targetsShape(dims), 0), graph.Iota(g, targetsShape(dims), 1),
		graph.ExpandAxes(graph.ConvertDType(targets, dtypes.Int32), -1)}, -1) // [B, T, 3]
	nll := graph.Neg(graph.Gather(lp, at)) // [B, T]
	if weights == nil {
		return graph.ReduceAllMean(nll)
	}
	w := graph.ConvertDType(weights, dtypes.Float32)
	return graph.Div(graph.ReduceAllSum(graph.Mul(nll, w)), graph.Max(graph.ReduceAllSum(w), graph.Scalar(g, dtypes.Float32, 1)))
}

func targetsShape(dims []int) shapes.Shape { return shapes.Make(dtypes.Int32, dims[0], dims[1], 1) }

// indexerKL is Σ_t KL(p_t ‖ softmax(I_t)) over keySet [B, T, S], where p_t
// is the main attention probs [B, H, T, S] averaged over heads (= summed and
// L1-normalised), a constant target; scores [B, T, S] are the indexer's
// (dsa.md §9). Gradient to the scores: q − p on the key set.
//
// queries (optional, [B, T], 1 = real token) leaves padding queries out.
func indexerKL(probs, scores, keySet, queries *graph.Node) *graph.Node {
	g := scores.Graph()
	p := graph.StopGradient(graph.ReduceMean(graph.ConvertDType(probs, dtypes.Float32), 1)) // [B, T, S]
	p = graph.Where(keySet, p, graph.ZerosLike(p))
	p = graph.Div(p, graph.Max(graph.ReduceAndKeep(p, graph.ReduceSum, -1), graph.Scalar(g, dtypes.Float32, 1e-30)))
	low := lowest(g, dtypes.Float32)
	logQ := graph.LogSoftmax(graph.Where(keySet, scores, low), -1) // [B, T, S]
	pos := graph.LogicalAnd(keySet, graph.GreaterThan(p, graph.ScalarZero(g, dtypes.Float32)))
	safeP := graph.Where(pos, p, graph.OnesLike(p))
	terms := graph.Where(pos, graph.Mul(p, graph.Sub(graph.Log(safeP), logQ)), graph.ZerosLike(p)) // [B, T, S]
	if queries != nil {
		terms = graph.Mul(terms, graph.ExpandAxes(graph.ConvertDType(queries, dtypes.Float32), -1))
	}
	return graph.ReduceAllSum(terms)
}
