package model

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
)

// Seeded draws. A seeded request's t-th token is the Gumbel-max over the
// kept tokens of log p + g(key, t, id), where g is Gumbel noise made by
// hashing (key, t, id): no generator state, so the device (ChainSample)
// and the engine's host sampler draw the same token from the same
// distribution, whichever runs the step and whatever else is in the batch
// (up to float32 rounding, which decides only between near-equal scores).

// SeedKey folds a request's 64-bit seed into the 32-bit key of its noise.
func SeedKey(seed uint64) uint32 { return fmix32(uint32(seed) ^ fmix32(uint32(seed>>32)+0x9e3779b9)) }

// SeededGumbel is the Gumbel noise of token id at draw t under key, in
// float32 as the device computes it.
func SeededGumbel(key, t uint32, id int32) float32 {
	h := fmix32(fmix32(key^(t*0x9e3779b9)) ^ uint32(id))
	u := float32(h>>8)*(1.0/(1<<24)) + 1.0/(1<<25) // in (0, 1)
	return -float32(math.Log(float64(-float32(math.Log(float64(u))))))
}

// MaxSeededGumbel bounds SeededGumbel: its uniform is at most 1 − 2⁻²⁵.
const MaxSeededGumbel = 17.4

// fmix32 is MurmurHash3's finaliser: every input bit reaches every output bit.
func fmix32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return x
}

// seededGumbel is SeededGumbel for every id of a vocabulary of V: key and t
// [B] uint32 → [B, V] float32.
func seededGumbel(key, t *graph.Node, V int) *graph.Node {
	g := key.Graph()
	B := key.Shape().Dim(0)
	c := func(v uint32) *graph.Node { return graph.Scalar(g, dtypes.Uint32, v) }
	mix := func(x *graph.Node) *graph.Node {
		x = graph.BitwiseXor(x, graph.BitwiseShiftRightLogical(x, c(16)))
		x = graph.Mul(x, c(0x85ebca6b))
		x = graph.BitwiseXor(x, graph.BitwiseShiftRightLogical(x, c(13)))
		x = graph.Mul(x, c(0xc2b2ae35))
		return graph.BitwiseXor(x, graph.BitwiseShiftRightLogical(x, c(16)))
	}
	row := mix(graph.BitwiseXor(key, graph.Mul(t, c(0x9e3779b9))))                         // [B]
	id := graph.Iota(g, shapes.Make(dtypes.Uint32, B, V), 1)                               // [B, V]
	h := mix(graph.BitwiseXor(graph.BroadcastToDims(graph.ExpandAxes(row, -1), B, V), id)) // [B, V]
	u := graph.AddScalar(graph.MulScalar(graph.ConvertDType(graph.BitwiseShiftRightLogical(h, c(8)), dtypes.Float32), 1.0/(1<<24)), 1.0/(1<<25))
	return graph.Neg(graph.Log(graph.Neg(graph.Log(u))))
}
