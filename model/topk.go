package model

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
)

// Top-k by radix select: the k-th largest value is found bit by bit over an
// order-preserving integer view of the floats (32 passes of compare-and-count
// over the last axis), ties at the threshold go to the lowest indices, and
// the indices are recovered by binary search over the running count of the
// selection. Every step is a plain vectorised op, so it costs O(32·S) per row
// on any backend — no sort, no per-element comparator (GoMLX's Go backend
// sorts with a comparator graph per comparison, too slow for S in the
// thousands) — and its tie rule is the spec's (dsa.md §4.4).

// orderedKeys maps float32 x to int32 keys with the same order (NaN aside).
func orderedKeys(x *graph.Node) *graph.Node {
	x = graph.ConvertDType(x, dtypes.Float32)
	zero := graph.ScalarZero(x.Graph(), dtypes.Float32)
	x = graph.Where(graph.Equal(x, zero), graph.ZerosLike(x), x) // −0 ties with +0, as in float comparison
	bits := graph.Bitcast(x, dtypes.Int32)
	neg := graph.LessThan(bits, graph.ScalarZero(x.Graph(), dtypes.Int32))
	flipped := graph.BitwiseXor(bits, graph.Scalar(x.Graph(), dtypes.Int32, math.MaxInt32))
	return graph.Where(neg, flipped, bits)
}

// topKMask marks the k largest entries of the last axis of x (ties: lower
// index first). x [..., S] → bool [..., S]; k ≤ S.
func topKMask(x *graph.Node, k int) *graph.Node {
	g := x.Graph()
	S := x.Shape().Dim(-1)
	if k >= S {
		return graph.BroadcastToDims(graph.Const(g, true), x.Shape().Dimensions...)
	}
	key := orderedKeys(graph.StopGradient(x)) // [..., S]
	kk := graph.Scalar(g, dtypes.Int32, k)
	count := func(pred *graph.Node) *graph.Node { // [..., 1]
		return graph.ReduceAndKeep(graph.ConvertDType(pred, dtypes.Int32), graph.ReduceSum, -1)
	}
	// τ = the largest value v with count(key ≥ v) ≥ k: the k-th largest key.
	zero := graph.ScalarZero(g, dtypes.Int32)
	tau := graph.Where(graph.GreaterOrEqual(count(graph.GreaterOrEqual(key, zero)), kk),
		zero, graph.Scalar(g, dtypes.Int32, math.MinInt32)) // sign bit decided
	for b := 30; b >= 0; b-- {
		cand := graph.AddScalar(tau, float64(int32(1)<<b))
		tau = graph.Where(graph.GreaterOrEqual(count(graph.GreaterOrEqual(key, cand)), kk), cand, tau)
	}
	above := graph.GreaterThan(key, tau)
	at := graph.Equal(key, tau)
	room := graph.Sub(kk, count(above))                     // ties to take, [..., 1]
	rank := prefixSum(graph.ConvertDType(at, dtypes.Int32)) // 1-based among ties
	return graph.LogicalOr(above, graph.LogicalAnd(at, graph.LessOrEqual(rank, room)))
}

// maskIndices returns the positions of the k marked entries of each row of
// mask [B, T, S] (exactly k per row), ascending: [B, T, k] int32.
func maskIndices(mask *graph.Node, k int) *graph.Node {
	g := mask.Graph()
	dims := mask.Shape().Dimensions
	B, T, S := dims[0], dims[1], dims[2]
	cum := prefixSum(graph.ConvertDType(mask, dtypes.Int32)) // [B, T, S]
	// For slot j, the first s with cum[s] ≥ j+1.
	full := shapes.Make(dtypes.Int32, B, T, k, 1)
	bi, ti := graph.Iota(g, full, 0), graph.Iota(g, full, 1)
	want := graph.AddScalar(graph.Iota(g, shapes.Make(dtypes.Int32, B, T, k), 2), 1) // [B, T, k]
	lo := graph.Zeros(g, shapes.Make(dtypes.Int32, B, T, k))
	hi := graph.AddScalar(lo, float64(S-1))
	for step := 1; step < S; step *= 2 {
		mid := graph.Div(graph.Add(lo, hi), graph.Scalar(g, dtypes.Int32, 2))
		c := graph.Gather(cum, graph.Concatenate([]*graph.Node{bi, ti, graph.Reshape(mid, B, T, k, 1)}, -1)) // [B, T, k]
		ok := graph.GreaterOrEqual(c, want)
		hi = graph.Where(ok, mid, hi)
		lo = graph.Where(ok, lo, graph.AddScalar(mid, 1))
	}
	return lo
}

// pairwiseTopK ranks each entry of the last axis against all others in one
// pass (rank = how many entries beat it; ties: lower index first) and keeps
// the k best: O(S²) work per row but a single fused comparison, the fastest
// way for the router's few dozen experts on every backend. x [..., S] →
// mask [..., S] bool and indices [..., k] int32 in rank order.
func pairwiseTopK(x *graph.Node, k int) (mask, idx *graph.Node) {
	rank := pairwiseRank(x) // [..., S]
	mask = graph.LessThan(rank, graph.Scalar(x.Graph(), dtypes.Int32, k))
	hit := rankSlots(rank, k) // [..., S, k]
	pos := graph.Iota(x.Graph(), shapes.Make(dtypes.Int32, hit.Shape().Dimensions...), x.Rank()-1)
	idx = graph.ReduceSum(graph.Where(hit, pos, graph.ZerosLike(pos)), -2) // [..., k]
	return mask, idx
}

// pairwiseRank is, for each entry of the last axis of x [..., S], how many
// entries beat it (greater, or equal at a lower index): [..., S] int32.
func pairwiseRank(x *graph.Node) *graph.Node {
	g := x.Graph()
	x = graph.StopGradient(x)
	S := x.Shape().Dim(-1)
	r := x.Rank()
	dims := x.Shape().Dimensions
	pairDims := append(append([]int{}, dims...), S)                   // [..., S(i), S(j)]
	xi := graph.BroadcastToDims(graph.ExpandAxes(x, -1), pairDims...) // value of i
	xj := graph.BroadcastToDims(graph.ExpandAxes(x, -2), pairDims...) // value of j
	ii := graph.Iota(g, shapes.Make(dtypes.Int32, pairDims...), r-1)  // i
	jj := graph.Iota(g, shapes.Make(dtypes.Int32, pairDims...), r)    // j
	beats := graph.LogicalOr(graph.GreaterThan(xj, xi), graph.LogicalAnd(graph.Equal(xj, xi), graph.LessThan(jj, ii)))
	return graph.ReduceSum(graph.ConvertDType(beats, dtypes.Int32), -1) // [..., S]
}

// rankSlots marks which of the k rank slots each entry fills: rank [..., S]
// → bool [..., S, k], true where rank == slot.
func rankSlots(rank *graph.Node, k int) *graph.Node {
	slotDims := append(append([]int{}, rank.Shape().Dimensions...), k) // [..., S, k]
	slot := graph.Iota(rank.Graph(), shapes.Make(dtypes.Int32, slotDims...), rank.Rank())
	return graph.Equal(graph.BroadcastToDims(graph.ExpandAxes(rank, -1), slotDims...), slot)
}

// prefixSum is the inclusive running sum over the last axis, by log₂(S)
// shifted additions (Hillis–Steele): O(S·log S) vectorised work. GoMLX's
// CumSum lowers to a window reduction that costs O(S²) on the Go backend.
func prefixSum(x *graph.Node) *graph.Node {
	S := x.Shape().Dim(-1)
	for d := 1; d < S; d *= 2 {
		head := graph.ZerosLike(graph.SliceAxis(x, -1, graph.AxisRange(0, d)))
		shifted := graph.Concatenate([]*graph.Node{head, graph.SliceAxis(x, -1, graph.AxisRange(0, S-d))}, -1)
		x = graph.Add(x, shifted)
	}
	return x
}

// digitTopK is top-k by radix select over 8-bit digits, for backends on which
// one wide reduction is cheap and a sort is not (XLA on a GPU, with a query
// or a few per row): digitSearch finds the k-th largest key in four passes,
// ties at it go to the lowest indices, as in topKMask, and the selected
// positions (ascending) come from running counts and one scatter. Work is
// O(255·S) a pass, so the Go backend keeps topKMask. x [B, T, S] → indices
// [B, T, k] int32, mask [B, T, S]; k < S.
func digitTopK(x *graph.Node, k int) (idx, mask *graph.Node) {
	g := x.Graph()
	dims := x.Shape().Dimensions
	B, T, S := dims[0], dims[1], dims[2]
	u := unsignedKeys(x)                                                                                          // [B, T, S]
	tau := graph.Reshape(digitSearch(graph.Reshape(u, B*T, S), nil, graph.Scalar(g, dtypes.Float32, k)), B, T, 1) // [B, T, 1]: the k-th largest key
	above, at := graph.GreaterThan(u, tau), graph.Equal(u, tau)
	// One scan gives both running counts: the keys above τ, and the ties.
	runs := blockScan(graph.Stack([]*graph.Node{above, at}, 0)) // [2, B, T, S]
	aboveRun := graph.Squeeze(graph.SliceAxis(runs, 0, graph.AxisElem(0)), 0)
	atRun := graph.Squeeze(graph.SliceAxis(runs, 0, graph.AxisElem(1)), 0)
	room := graph.Sub(graph.Scalar(g, dtypes.Int32, k), graph.SliceAxis(aboveRun, -1, graph.AxisRange(S-1, S))) // [B, T, 1]: ties to take
	mask = graph.LogicalOr(above, graph.LogicalAnd(at, graph.LessOrEqual(atRun, room)))
	// A selected key's slot is how many selected keys precede it: those
	// above τ, and the ties before it up to room. The rest go to a spare
	// slot k, dropped after.
	before := graph.AddScalar(graph.Add(aboveRun, graph.Min(atRun, room)), -1)
	slot := graph.Where(mask, before, graph.Scalar(g, dtypes.Int32, k)) // [B, T, S]
	full := shapes.Make(dtypes.Int32, B, T, S, 1)
	coords := graph.Concatenate([]*graph.Node{
		graph.Iota(g, full, 0), graph.Iota(g, full, 1), graph.Reshape(slot, B, T, S, 1),
	}, -1) // [B, T, S, 3]
	s := graph.Iota(g, shapes.Make(dtypes.Int32, B, T, S), 2)
	idx = graph.ScatterMax(graph.Zeros(g, shapes.Make(dtypes.Int32, B, T, k+1)), coords, s, false, false) // [B, T, k+1]
	return graph.SliceAxis(idx, -1, graph.AxisRange(0, k)), mask
}

// unsignedKeys maps float32 x to int64 keys in 0 … 2³²−1 with the same order
// (orderedKeys shifted), so that digits never see a sign.
func unsignedKeys(x *graph.Node) *graph.Node {
	return graph.AddScalar(graph.ConvertDType(orderedKeys(graph.StopGradient(x)), dtypes.Int64), 1<<31)
}

// firstAtThreshold marks the keys above tau and, of those equal to it, the
// first room in index order: u [..., S] int64, tau [..., 1], room [..., 1]
// int32 → bool [..., S].
func firstAtThreshold(u, tau, room *graph.Node) *graph.Node {
	at := graph.Equal(u, tau)
	return graph.LogicalOr(graph.GreaterThan(u, tau), graph.LogicalAnd(at, graph.LessOrEqual(blockScan(at), room)))
}

// digitSearch finds, in each row of key [R, S] (int64 in 0 … 2³²−1), the
// largest c with Σ w over the keys ≥ c at least want: 8 bits a pass, each
// pass weighing at once, for all 255 values the next digit could take, the
// keys that reach the threshold it would make (the sums fall as the digit
// grows, so the digit is how many of them still reach want). w [R, S]
// float32, or nil to count keys; want a float32 scalar or [R, 1]. When
// even c = 0 falls short, 0. → [R, 1] int64.
func digitSearch(key, w, want *graph.Node) *graph.Node {
	g := key.Graph()
	R := key.Shape().Dim(0)
	// The keys run along the last axis, so each sum is a row reduction,
	// XLA's fastest kind; reducing [R, S, 255] over S took 57 µs a pass at
	// R = 8, S = 32K on the H200.
	// The wide comparisons run on int32, shifted down by 2³¹ (the same
	// order): GPUs compare int64 in several instructions.
	signed := func(x *graph.Node) *graph.Node { return graph.ConvertDType(graph.AddScalar(x, -(1<<31)), dtypes.Int32) }
	ke := graph.ExpandAxes(signed(key), 1)                                               // [R, 1, S]
	digits := graph.AddScalar(graph.Iota(g, shapes.Make(dtypes.Int64, 1, 255, 1), 1), 1) // [1, 255, 1]: 1 … 255
	prefix := graph.Zeros(g, shapes.Make(dtypes.Int64, R, 1, 1))                         // the answer's digits so far
	for shift := 24; shift >= 0; shift -= 8 {
		cand := graph.Add(prefix, graph.MulScalar(digits, float64(int64(1)<<shift)))      // [R, 255, 1]
		hit := graph.ConvertDType(graph.GreaterOrEqual(ke, signed(cand)), dtypes.Float32) // [R, 255, S]
		if w != nil {
			hit = graph.Mul(hit, graph.ExpandAxes(w, 1))
		}
		reach := graph.ReduceSum(hit, -1)                                                             // [R, 255]
		d := graph.ReduceSum(graph.ConvertDType(graph.GreaterOrEqual(reach, want), dtypes.Int64), -1) // [R]
		prefix = graph.Add(prefix, graph.Reshape(graph.MulScalar(d, float64(int64(1)<<shift)), R, 1, 1))
	}
	return graph.Reshape(prefix, R, 1)
}

// scanBlock is blockScan's block length.
const scanBlock = 128

// blockScan is the inclusive running count of a boolean's last axis, as two
// products with triangular matrices of ones: within blocks of 128, then
// across the blocks' totals. A few kernels on XLA, where a scan by shifted
// additions costs one per doubling. Counts are exact in float32 up to 2²⁴.
// b [..., S] bool → [..., S] int32.
func blockScan(b *graph.Node) *graph.Node {
	g := b.Graph()
	dims := b.Shape().Dimensions
	S := dims[len(dims)-1]
	R := b.Shape().Size() / S // rows: every leading axis at once
	L := min(scanBlock, S)
	nb := (S + L - 1) / L
	x := graph.Reshape(graph.ConvertDType(b, dtypes.Float32), R, S) // [R, S]
	if pad := nb*L - S; pad > 0 {
		x = graph.Concatenate([]*graph.Node{x, graph.Zeros(g, shapes.Make(dtypes.Float32, R, pad))}, -1)
	}
	blocks := graph.Reshape(x, R, nb, L)                                                                 // [R, nb, L]
	within := graph.Einsum("rnj,ji->rni", blocks, upperOnes(g, L))                                       // [R, nb, L]
	totals := graph.SliceAxis(within, -1, graph.AxisRange(L-1, L))                                       // [R, nb, 1]
	before := graph.Einsum("rjo,jn->rno", totals, strictUpperOnes(g, nb))                                // [R, nb, 1]: the blocks before each
	sum := graph.SliceAxis(graph.Reshape(graph.Add(within, before), R, nb*L), -1, graph.AxisRange(0, S)) // [R, S]
	return graph.Reshape(graph.ConvertDType(sum, dtypes.Int32), dims...)
}

// upperOnes is the [n, n] float32 matrix with ones where row ≤ column.
func upperOnes(g *graph.Graph, n int) *graph.Node {
	sh := shapes.Make(dtypes.Int32, n, n)
	return graph.ConvertDType(graph.LessOrEqual(graph.Iota(g, sh, 0), graph.Iota(g, sh, 1)), dtypes.Float32)
}

// strictUpperOnes is the [n, n] float32 matrix with ones where row < column.
func strictUpperOnes(g *graph.Graph, n int) *graph.Node {
	sh := shapes.Make(dtypes.Int32, n, n)
	return graph.ConvertDType(graph.LessThan(graph.Iota(g, sh, 0), graph.Iota(g, sh, 1)), dtypes.Float32)
}
