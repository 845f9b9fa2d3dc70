package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestOverwriteEqualsScatterUpdate checks the cache writes that touch only
// their slots against graph.ScatterUpdate, bit for bit, in float32 and bf16,
// for decode-like slots (one per row) and a chunk (two per row), and for a
// whole-row write (the Stepper's one-row step). Each mode also writes a
// cache kept as words (the Stepper's caches on XLA), whose bits must come
// out the same.
func TestOverwriteEqualsScatterUpdate(t *testing.T) {
	backend := testutil.Backend(t)
	const B, C, W = 3, 7, 5
	rng := rand.New(rand.NewPCG(1, 2))
	cache := make([]float32, B*C*W)
	for i := range cache {
		cache[i] = float32(rng.NormFloat64() * 1e3)
	}
	cache[0], cache[1] = 0, float32(math.Copysign(0, -1))
	for _, dt := range []dtypes.DType{dtypes.Float32, dtypes.BFloat16} {
		for _, mode := range []slotWrite{writeBits, writeZeroAdd} {
			for _, T := range []int{1, 2} {
				pos := make([]int32, B*T)
				upd := make([]float32, B*T*W)
				for b := range B {
					p := rng.Perm(C)
					for j := range T {
						pos[b*T+j] = int32(p[j])
					}
				}
				for i := range upd {
					upd[i] = float32(rng.NormFloat64())
				}
				exec, err := graph.NewExec(backend, func(in []*graph.Node) []*graph.Node {
					c, p, u := graph.ConvertDType(in[0], dt), in[1], graph.ConvertDType(in[2], dt)
					at := writeCoords(p)
					row := graph.Const(c.Graph(), [][]int32{{1}})
					rowUpd := graph.AddScalar(graph.Gather(c, row), 1)
					it, _ := wordDType(dt)
					words := graph.Bitcast(c, it)
					stored, keys := (&cacheWriter{mode: mode, at: at}).write(words, u)
					rowWords := overwrite(words, row, graph.Bitcast(rowUpd, it), graph.Bitcast(graph.Gather(c, row), it), mode)
					return []*graph.Node{graph.ScatterUpdate(c, at, u, false, true), overwrite(c, at, u, nil, mode),
						graph.ScatterUpdate(c, row, rowUpd, true, true), overwrite(c, row, rowUpd, graph.Gather(c, row), mode),
						keys, graph.Bitcast(stored, dt), graph.Bitcast(rowWords, dt), stored}
				})
				if err != nil {
					t.Fatal(err)
				}
				outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(cache, B, C, W),
					tensors.FromFlatDataAndDimensions(pos, B, T), tensors.FromFlatDataAndDimensions(upd, B, T, W))
				if err != nil {
					t.Fatal(err)
				}
				if it, _ := wordDType(dt); outs[4].DType() != dt || outs[7].DType() != it {
					t.Fatalf("%s: keys read from words are %s, stored words %s; want %s and %s", dt, outs[4].DType(), outs[7].DType(), dt, it)
				}
				// got k+1 against want k; the words' writes against the same wants.
				for _, k := range [][2]int{{0, 1}, {2, 3}, {0, 4}, {0, 5}, {2, 6}} {
					want, _, _ := TensorFloat32(outs[k[0]])
					got, _, _ := TensorFloat32(outs[k[1]])
					for i := range want {
						same := math.Float32bits(got[i]) == math.Float32bits(want[i])
						if mode == writeZeroAdd && got[i] == 0 && want[i] == 0 {
							same = true // −0 written becomes +0
						}
						if !same {
							t.Fatalf("%s mode %d T %d output %d: element %d is %g, ScatterUpdate gives %g", dt, mode, T, k[1], i, got[i], want[i])
						}
					}
				}
				exec.Finalize()
			}
		}
	}
}
