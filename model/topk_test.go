package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// bruteTopK is the oracle: indices of the k largest values, ties to the lower index.
func bruteTopK(row []float32, k int) []int32 {
	idx := make([]int32, len(row))
	for i := range idx {
		idx[i] = int32(i)
	}
	sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
	out := slices.Clone(idx[:k])
	slices.Sort(out)
	return out
}

func TestRadixTopKMatchesSort(t *testing.T) {
	inf := float32(math.Inf(1))
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]float32, 300)
	for i := range random {
		random[i] = float32(rng.NormFloat64() * 1e3)
	}
	cases := []struct {
		name string
		row  []float32
		k    int
	}{
		{"distinct", []float32{3, 1, 4, 1.5, 5, 9, 2, 6}, 3},
		{"ties at the threshold", []float32{1, 2, 2, 2, 0, 2}, 2},
		{"all equal", []float32{7, 7, 7, 7, 7}, 3},
		{"zeros and negative zero", []float32{0, float32(math.Copysign(0, -1)), 0, -1, 1}, 3},
		{"infinities", []float32{-inf, 3, -inf, inf, -inf, -2}, 4},
		{"fewer finite than k", []float32{-inf, 5, -inf, -inf}, 3},
		{"negatives", []float32{-5, -1, -3, -2, -4}, 2},
		{"tiny and huge", []float32{1e-38, -1e-38, 3e38, -3e38, 1e-45}, 2},
		{"random", random, 37},
	}
	methods := map[string]func(x *graph.Node, k int) *graph.Node{
		"radix":  func(x *graph.Node, k int) *graph.Node { idx, _ := selectTopK(x, k, false); return idx },
		"native": func(x *graph.Node, k int) *graph.Node { idx, _ := selectTopK(x, k, true); return idx },
		"pairwise": func(x *graph.Node, k int) *graph.Node {
			_, idx := pairwiseTopK(x, k)
			return idx
		},
	}
	backend := testutil.Backend(t)
	for _, c := range cases {
		for name, method := range methods {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				exec, err := graph.NewExec(backend, func(x *graph.Node) *graph.Node {
					x = graph.Reshape(x, 1, 1, len(c.row))
					return graph.Reshape(method(x, c.k), c.k)
				})
				if err != nil {
					t.Fatal(err)
				}
				defer exec.Finalize()
				out, err := exec.Exec(tensors.FromFlatDataAndDimensions(c.row, len(c.row)))
				if err != nil {
					t.Fatal(err)
				}
				got := tensors.MustCopyFlatData[int32](out[0])
				slices.Sort(got)
				if want := bruteTopK(c.row, c.k); !slices.Equal(got, want) {
					t.Fatalf("top-%d of %v: got %v, want %v", c.k, c.row, got, want)
				}
			})
		}
	}
}
