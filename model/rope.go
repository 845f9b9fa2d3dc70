package model

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
)

// RoPE, shared by MLA (interleaved layout) and the indexer (half-split
// layout), with YaRN frequencies from Config.RopeFrequencies (dsa.md §3.2).

// ropeAngles returns cos and sin of φ_i(p) = p · f'_i for every position,
// times transformers' attention factor: pos [B, T] → cos, sin [B, T, d_r/2].
func ropeAngles(cfg *Config, pos *graph.Node, dt dtypes.DType) (cos, sin *graph.Node) {
	g := pos.Graph()
	freqs := cfg.RopeFrequencies()
	f32 := make([]float32, len(freqs))
	for i, f := range freqs {
		f32[i] = float32(f)
	}
	f := graph.Const(g, f32)                                           // [d_r/2]
	p := graph.ExpandAxes(graph.ConvertDType(pos, dtypes.Float32), -1) // [B, T, 1]
	phi := graph.Mul(p, graph.ExpandLeftToRank(f, 3))                  // [B, T, d_r/2], fp32
	cos = graph.Cos(phi)
	sin = graph.Sin(phi)
	if a := cfg.RopeAttentionFactor(); a != 1 {
		cos = graph.MulScalar(cos, a)
		sin = graph.MulScalar(sin, a)
	}
	return graph.ConvertDType(cos, dt), graph.ConvertDType(sin, dt)
}

// rotate turns pairs (a_i, b_i) by φ_i and returns [a·cos − b·sin | b·cos + a·sin].
// a, b [B, T, ..., d_r/2]; cos, sin [B, T, d_r/2] gain the middle axes.
func rotate(a, b, cos, sin *graph.Node) *graph.Node {
	for cos.Rank() < a.Rank() {
		cos = graph.InsertAxes(cos, 2)
		sin = graph.InsertAxes(sin, 2)
	}
	first := graph.Sub(graph.Mul(a, cos), graph.Mul(b, sin))
	second := graph.Add(graph.Mul(b, cos), graph.Mul(a, sin))
	return graph.Concatenate([]*graph.Node{first, second}, -1)
}

// ropeInterleaved rotates pairs (x[2i], x[2i+1]) as DeepSeek's MLA does.
// The result is written de-interleaved (all first elements, then all second
// ones), as transformers does; q_pe and k_pe get the same permutation, so
// every score equals DeepSeek's. x [B, T, ..., d_r] → [B, T, ..., d_r].
func ropeInterleaved(x, cos, sin *graph.Node) *graph.Node {
	dims := x.Shape().Dimensions
	half := dims[len(dims)-1] / 2
	pairs := graph.Reshape(x, append(append([]int{}, dims[:len(dims)-1]...), half, 2)...) // [..., d_r/2, 2]
	a := graph.Squeeze(graph.SliceAxis(pairs, -1, graph.AxisElem(0)), -1)                 // [..., d_r/2]
	b := graph.Squeeze(graph.SliceAxis(pairs, -1, graph.AxisElem(1)), -1)                 // [..., d_r/2]
	return rotate(a, b, cos, sin)
}

// ropeHalf rotates pairs (x[i], x[i + d_r/2]) (the indexer's non-interleaved
// layout). x [B, T, ..., d_r] → [B, T, ..., d_r].
func ropeHalf(x, cos, sin *graph.Node) *graph.Node {
	half := x.Shape().Dim(-1) / 2
	a := graph.SliceAxis(x, -1, graph.AxisRange(0, half))
	b := graph.SliceAxis(x, -1, graph.AxisRangeToEnd(half))
	return rotate(a, b, cos, sin)
}
