package model

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	gm "github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/model/initializer"
)

// DeepSeekMoE (dsa.md §5): a sigmoid router with a selection-only correction
// bias and group-limited top-k, renormalised gate weights times the routed
// scale, the routed experts and the always-on shared expert. Axes: N tokens,
// E routed experts, G groups, K experts per token, I expert inner dim.
//
// Routed experts are stored stacked, one variable per projection ([E, I, D]
// for gate_proj and up_proj, [E, D, I] for down_proj), as transformers v5
// holds them; the checkpoint names stay per expert (see Names).

// route picks each token's experts and their gate weights. x [N, D] →
// ids [N, K] int32, weights [N, K]. forced, when given ([N, K]), replaces the
// router's choice (routing replay, rl.md §5); the weights still come from the
// router's scores of those experts. own is the router's own choice: ids when
// nothing is forced, and with forced routes only when asked for (to measure
// how often replay overrides it), else nil.
func route(scope *gm.Scope, cfg *Config, x, forced *graph.Node, wantOwn bool) (ids, weights, sigma, own *graph.Node) {
	g := x.Graph()
	N := x.Shape().Dim(0)
	E, K := cfg.NumRoutedExperts, cfg.NumExpertsPerTok
	wr := weight(scope, g, x.DType(), nil, "weight", E, cfg.HiddenSize) // [E, D]
	logits := graph.DotGeneral(graph.ConvertDType(x, dtypes.Float32), []int{1}, nil,
		graph.ConvertDType(wr, dtypes.Float32), []int{1}, nil) // [N, E], fp32
	sigma = graph.Sigmoid(logits) // [N, E]
	if forced == nil {
		// The router's own choice and the unbiased σ of the chosen experts.
		ids, weights = choose(scope, cfg, sigma, true) // [N, K], [N, K]
		own = ids
	} else {
		if wantOwn {
			own, _ = choose(scope, cfg, sigma, false)
		}
		ids = graph.ConvertDType(forced, dtypes.Int32)
		at := graph.Concatenate([]*graph.Node{
			graph.Iota(g, shapes.Make(dtypes.Int32, N, K, 1), 0), graph.Reshape(ids, N, K, 1)}, -1) // [N, K, 2]
		weights = graph.Gather(sigma, at) // [N, K]: the unbiased σ of the chosen experts
	}
	if cfg.NormTopKProb {
		weights = graph.Div(weights, graph.AddScalar(graph.ReduceAndKeep(weights, graph.ReduceSum, -1), 1e-20))
	}
	weights = graph.MulScalar(weights, cfg.RoutedScalingFactor)
	return ids, graph.ConvertDType(weights, x.DType()), sigma, own
}

// choose is the router's selection from the scores σ [N, E]: the correction
// bias added for selection only, the best topk_group groups by the sum of
// their two best experts, then the K best experts in them. → ids [N, K]
// int32 in rank order and, with wantScores, σ of those experts [N, K]
// (picked in the same reduction as the ids, no gather).
func choose(scope *gm.Scope, cfg *Config, sigma *graph.Node, wantScores bool) (ids, scores *graph.Node) {
	g := sigma.Graph()
	N := sigma.Shape().Dim(0)
	E, G, K := cfg.NumRoutedExperts, cfg.NumGroups, cfg.NumExpertsPerTok
	biasPath := gm.JoinPath(scope.Scope(), "e_score_correction_bias")
	biasVar := existing(scope.Store(), biasPath, E)
	if biasVar == nil {
		biasVar = scope.Store().VariableWithShape(biasPath, shapes.Make(dtypes.Float32, E), initializer.Zero).
			SetTrainable(false) // moved by load balancing, never by gradients (dsa.md §5)
	}
	choice := graph.StopGradient(graph.Add(sigma, graph.ExpandAxes(biasVar.NodeValue(g), 0)))    // [N, E]
	grouped := graph.Reshape(choice, N, G, E/G)                                                  // [N, G, E/G]
	groupScore := topTwoSum(grouped)                                                             // [N, G]
	keep, _ := pairwiseTopK(groupScore, cfg.TopKGroup)                                           // [N, G]
	keepE := graph.Reshape(graph.BroadcastToDims(graph.Reshape(keep, N, G, 1), N, G, E/G), N, E) // [N, E]
	masked := graph.Where(keepE, choice, graph.Infinity(g, dtypes.Float32, -1))
	if !wantScores {
		_, ids = pairwiseTopK(masked, K) // [N, K]
		return ids, nil
	}
	// Expert id and σ of each rank slot in one masked sum (exactly one hit per slot).
	hit := graph.ExpandAxes(rankSlots(pairwiseRank(masked), K), -1) // [N, E, K, 1]
	e := graph.Iota(g, shapes.Make(dtypes.Float32, N, E, 1), 1)
	vals := graph.ExpandAxes(graph.Concatenate([]*graph.Node{e, graph.ExpandAxes(sigma, -1)}, -1), 2) // [N, E, 1, 2]
	vals = graph.BroadcastToDims(vals, N, E, K, 2)
	picked := graph.ReduceSum(graph.Where(graph.BroadcastToDims(hit, N, E, K, 2), vals, graph.ZerosLike(vals)), 1) // [N, K, 2]
	ids = graph.ConvertDType(graph.Squeeze(graph.SliceAxis(picked, -1, graph.AxisElem(0)), -1), dtypes.Int32)
	return ids, graph.Squeeze(graph.SliceAxis(picked, -1, graph.AxisElem(1)), -1)
}

// topTwoSum is the sum of the two largest entries of the last axis of x
// [..., n] (n ≥ 2), as the largest sum over pairs of distinct entries: one
// reduction, and the same value as adding the two largest (rounding is
// monotonic). With n = 1 it is the one entry.
func topTwoSum(x *graph.Node) *graph.Node {
	n := x.Shape().Dim(-1)
	if n < 2 {
		return graph.Squeeze(x, -1)
	}
	r := x.Rank()
	pairs := graph.Add(graph.ExpandAxes(x, -1), graph.ExpandAxes(x, -2)) // [..., n, n]
	dims := pairs.Shape().Dimensions
	i := graph.Iota(x.Graph(), shapes.Make(dtypes.Int32, dims...), r-1)
	j := graph.Iota(x.Graph(), shapes.Make(dtypes.Int32, dims...), r)
	pairs = graph.Where(graph.NotEqual(i, j), pairs, graph.Infinity(x.Graph(), x.DType(), -1))
	return graph.ReduceMax(pairs, -1, -2)
}

// moeOut is what an MoE layer reports besides its output.
type moeOut struct {
	ids     *graph.Node // [B, T, K] routed expert ids
	own     *graph.Node // [B, T, K] the router's own choice when routes were forced and Options.OwnRoutes asks
	load    *graph.Node // [E] tokens routed to each expert (weighted by the token mask)
	balance *graph.Node // scalar sequence-wise balance loss, with Options.BalanceLoss
}

// moe is DeepSeekMoE on x [B, T, D]: the output [B, T, D] and what it routed.
func moe(scope *gm.Scope, cfg *Config, x, forced *graph.Node, opts *Options) (*graph.Node, moeOut) {
	dims := x.Shape().Dimensions
	B, T, D := dims[0], dims[1], dims[2]
	N := B * T
	E, K, I := cfg.NumRoutedExperts, cfg.NumExpertsPerTok, cfg.MoEIntermediateSize
	flat := graph.Reshape(x, N, D) // [N, D]
	if forced != nil {
		forced = graph.Reshape(forced, N, K)
	}
	ids, w, sigma, own := route(scope.At("gate"), cfg, flat, forced, opts.OwnRoutes) // [N, K], [N, K], [N, E]

	g := x.Graph()
	ex := scope.At("experts")
	wGate := weight(ex.At("gate_proj"), g, x.DType(), nil, "weight", E, I, D) // [E, I, D]
	wUp := weight(ex.At("up_proj"), g, x.DType(), nil, "weight", E, I, D)     // [E, I, D]
	wDown := weight(ex.At("down_proj"), g, x.DType(), nil, "weight", E, D, I) // [E, D, I]

	var routed *graph.Node
	if N*K <= E {
		// Few tokens (decode): read only the chosen experts' weights.
		at := graph.Reshape(ids, N, K, 1)
		gw, uw, dw := graph.Gather(wGate, at), graph.Gather(wUp, at), graph.Gather(wDown, at) // [N, K, I, D], [N, K, D, I]
		gate := graph.Einsum("nd,nkid->nki", flat, gw)                                        // [N, K, I]
		up := graph.Einsum("nd,nkid->nki", flat, uw)                                          // [N, K, I]
		h := graph.Mul(graph.Mul(gate, graph.Sigmoid(gate)), up)                              // [N, K, I]
		y := graph.Einsum("nki,nkdi->nkd", h, dw)                                             // [N, K, D]
		routed = graph.Einsum("nk,nkd->nd", w, y)                                             // [N, D]
	} else {
		// Many tokens: every expert sees every token, weighted by a dense gate
		// matrix that is zero off the chosen experts (exact, E/K times the work).
		at := graph.Concatenate([]*graph.Node{
			graph.Iota(g, shapes.Make(dtypes.Int32, N, K, 1), 0), graph.Reshape(ids, N, K, 1)}, -1) // [N, K, 2]
		gates := graph.ScatterSum(graph.Zeros(g, shapes.Make(x.DType(), N, E)), at, w, false, true) // [N, E]
		gate := graph.Einsum("nd,eid->nei", flat, wGate)                                            // [N, E, I]
		up := graph.Einsum("nd,eid->nei", flat, wUp)                                                // [N, E, I]
		h := graph.Mul(graph.Mul(gate, graph.Sigmoid(gate)), up)                                    // [N, E, I]
		h = graph.Mul(h, graph.ExpandAxes(gates, -1))                                               // [N, E, I]
		routed = graph.Einsum("nei,edi->nd", h, wDown)                                              // [N, D]
	}
	out := routed
	if cfg.NumSharedExperts > 0 {
		out = graph.Add(out, swiGLU(scope.At("shared_experts"), flat, cfg.NumSharedExperts*I))
	}
	res := moeOut{ids: graph.Reshape(ids, B, T, K)}
	if forced != nil && own != nil {
		res.own = graph.Reshape(own, B, T, K)
	}
	res.load, res.balance = balance(cfg, ids, sigma, B, T, opts)
	return graph.Reshape(out, B, T, D), res
}

// balance measures the routing: each expert's load (for DeepSeek-V3's
// auxiliary-loss-free bias update) and, when asked, the small sequence-wise
// balance loss Σ_e f_e·P_e averaged over sequences, with
// f_e = E/(K·T)·Σ_t 1[e chosen at t] and P_e = mean_t σ_e/Σ_e' σ_e'
// (DeepSeek-V3 report, eqs. 17–20). Positions with TokenMask 0 do not count.
func balance(cfg *Config, ids, sigma *graph.Node, B, T int, opts *Options) (load, loss *graph.Node) {
	g := ids.Graph()
	E, K := cfg.NumRoutedExperts, cfg.NumExpertsPerTok
	hits := graph.ReduceSum(graph.OneHot(ids, E, dtypes.Float32), 1) // [N, E]: 1 where chosen
	w := graph.Ones(g, shapes.Make(dtypes.Float32, B*T, 1))
	if opts.TokenMask != nil {
		w = graph.Reshape(graph.ConvertDType(opts.TokenMask, dtypes.Float32), B*T, 1)
	}
	hits = graph.Mul(hits, w)
	load = graph.StopGradient(graph.ReduceSum(hits, 0)) // [E]
	if !opts.BalanceLoss {
		return load, nil
	}
	hits = graph.Reshape(graph.StopGradient(hits), B, T, E)
	wt := graph.Reshape(w, B, T, 1)
	n := graph.Max(graph.ReduceSum(wt, 1), graph.Scalar(g, dtypes.Float32, 1))          // [B, 1]
	f := graph.MulScalar(graph.Div(graph.ReduceSum(hits, 1), n), float64(E)/float64(K)) // [B, E]
	s := graph.Reshape(sigma, B, T, E)
	s = graph.Div(s, graph.ReduceAndKeep(s, graph.ReduceSum, -1))
	p := graph.Div(graph.ReduceSum(graph.Mul(s, wt), 1), n) // [B, E]
	return load, graph.ReduceAllMean(graph.ReduceSum(graph.Mul(f, p), -1))
}
