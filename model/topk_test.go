package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
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
		"radix":  func(x *graph.Node, k int) *graph.Node { idx, _ := selectTopK(x, k, topKRadix); return idx },
		"native": func(x *graph.Node, k int) *graph.Node { idx, _ := selectTopK(x, k, topKNative); return idx },
		"digits": func(x *graph.Node, k int) *graph.Node { idx, _ := selectTopK(x, k, topKDigits); return idx },
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

// TestDigitTopKRows checks digitTopK on many rows at once (each row its own
// threshold) against the oracle: the indices in ascending order, exactly k
// of them, and the mask marking the same keys. Values on a coarse grid make
// ties at the threshold common; -inf tails are the cache slots past a row's
// position. Rows of 300 keys span three scan blocks.
func TestDigitTopKRows(t *testing.T) {
	backend := testutil.Backend(t)
	const B, T, S = 2, 3, 300
	rng := rand.New(rand.NewPCG(5, 6))
	vals := make([]float32, B*T*S)
	for i := range vals {
		switch r := i / S; {
		case r%3 == 0:
			vals[i] = float32(rng.IntN(9)) - 4 // ties
		default:
			vals[i] = float32(rng.NormFloat64())
		}
		if i%S > S-40 && i/S == 4 {
			vals[i] = float32(math.Inf(-1))
		}
	}
	for _, k := range []int{1, 37, 128, 299} {
		exec, err := graph.NewExec(backend, func(x *graph.Node) (*graph.Node, *graph.Node) {
			idx, mask := digitTopK(graph.Reshape(x, B, T, S), k)
			return idx, mask
		})
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Exec(tensors.FromFlatDataAndDimensions(vals, B*T*S))
		exec.Finalize()
		if err != nil {
			t.Fatal(err)
		}
		idx, mask := tensors.MustCopyFlatData[int32](out[0]), tensors.MustCopyFlatData[bool](out[1])
		for r := range B * T {
			want := bruteTopK(vals[r*S:(r+1)*S], k)
			if got := idx[r*k : (r+1)*k]; !slices.Equal(got, want) {
				t.Fatalf("k %d row %d: indices %v, want %v", k, r, got, want)
			}
			for s := range S {
				if mask[r*S+s] != slices.Contains(want, int32(s)) {
					t.Fatalf("k %d row %d: mask[%d] = %v, want %v", k, r, s, mask[r*S+s], !mask[r*S+s])
				}
			}
		}
	}
}

// TestRouterChoiceMatchesOracle checks choose (group scores as the best pair
// sum, ids and σ in one masked reduction) against a plain Go router: group
// score = the sum of the group's two best, the topk_group best groups, then
// the K best experts in them in rank order, ties to the lower index; values
// on a coarse grid so ties are frequent.
func TestRouterChoiceMatchesOracle(t *testing.T) {
	backend := testutil.Backend(t)
	cfg := &Config{NumRoutedExperts: 16, NumGroups: 4, TopKGroup: 2, NumExpertsPerTok: 3}
	const N = 64
	E, G, K := cfg.NumRoutedExperts, cfg.NumGroups, cfg.NumExpertsPerTok
	rng := rand.New(rand.NewPCG(3, 4))
	sigma := make([]float32, N*E)
	for i := range sigma {
		sigma[i] = float32(rng.IntN(6)) / 8
	}
	store := gm.NewStore()
	exec, err := gm.NewExec(backend, store, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
		ids, scores := choose(scope, cfg, in[0], true)
		own, _ := choose(scope, cfg, in[0], false)
		return []*graph.Node{ids, scores, own}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(sigma, N, E))
	if err != nil {
		t.Fatal(err)
	}
	ids, scores, own := tensors.MustCopyFlatData[int32](outs[0]), tensors.MustCopyFlatData[float32](outs[1]), tensors.MustCopyFlatData[int32](outs[2])
	rankOf := func(vals []float32, k int) []int32 { // k best, in rank order
		idx := make([]int32, len(vals))
		for i := range idx {
			idx[i] = int32(i)
		}
		sort.SliceStable(idx, func(a, b int) bool { return vals[idx[a]] > vals[idx[b]] })
		return idx[:k]
	}
	for n := range N {
		row := sigma[n*E : (n+1)*E]
		gs := make([]float32, G)
		for g := range G {
			best := rankOf(row[g*E/G:(g+1)*E/G], 2)
			gs[g] = row[g*E/G+int(best[0])] + row[g*E/G+int(best[1])]
		}
		masked := slices.Clone(row)
		keep := rankOf(gs, cfg.TopKGroup)
		for e := range E {
			if !slices.Contains(keep, int32(e/(E/G))) {
				masked[e] = float32(math.Inf(-1))
			}
		}
		want := rankOf(masked, K)
		for k := range K {
			if ids[n*K+k] != want[k] || own[n*K+k] != want[k] || scores[n*K+k] != row[want[k]] {
				t.Fatalf("token %d slot %d: ids %d / %d, σ %g; want %d, σ %g", n, k, ids[n*K+k], own[n*K+k], scores[n*K+k], want[k], row[want[k]])
			}
		}
	}
}

// TestKeptDigitsMatchesSortedCut checks keptDigits, the cut without a sort,
// against keptMask over the sorted vocabulary, on log-probabilities with many
// ties (a coarse grid of logits) and −∞ entries, for every combination of
// top-k, min-p and top-p below: the same tokens, ties at each threshold
// taken in id order.
func TestKeptDigitsMatchesSortedCut(t *testing.T) {
	backend := testutil.Backend(t)
	const V = 40
	rng := rand.New(rand.NewPCG(7, 8))
	var dists [][]float32
	for range 4 {
		logits := make([]float64, V)
		for i := range logits {
			logits[i] = float64(rng.IntN(6)) * 0.7
		}
		dists = append(dists, logSoftmax64(logits))
	}
	withInf := slices.Clone(dists[0])
	for i := 0; i < V; i += 3 {
		withInf[i] = float32(math.Inf(-1))
	}
	dists = append(dists, withInf)
	var lp, params []float32
	for _, d := range dists {
		for _, k := range []float32{0, 1, 3, 7, V} {
			for _, minP := range []float32{0, 0.2, 0.5} {
				for _, topP := range []float32{0, 0.3, 0.5, 0.9, 1} {
					lp = append(lp, d...)
					params = append(params, k, minP, topP)
				}
			}
		}
	}
	B := len(params) / 3
	exec, err := graph.NewExec(backend, func(lp, params *graph.Node) (*graph.Node, *graph.Node) {
		param := func(i int) *graph.Node { return graph.Slice(params, graph.AxisRange(), graph.AxisElem(i)) }
		sorted, order := graph.TopK(lp, V, -1) // [B, V]
		inRanks := graph.ConvertDType(keptMask(sorted, param(0), param(1), param(2)), dtypes.Int32)
		full := shapes.Make(dtypes.Int32, B, V, 1)
		coords := graph.Concatenate([]*graph.Node{graph.Iota(lp.Graph(), full, 0), graph.Reshape(graph.ConvertDType(order, dtypes.Int32), B, V, 1)}, -1)
		sortedCut := graph.ScatterMax(graph.Zeros(lp.Graph(), shapes.Make(dtypes.Int32, B, V)), coords, inRanks, false, true)
		return sortedCut, graph.ConvertDType(keptDigits(lp, lp, param(0), param(1), param(2)), dtypes.Int32)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	out, err := exec.Exec(tensors.FromFlatDataAndDimensions(lp, B, V), tensors.FromFlatDataAndDimensions(params, B, 3))
	if err != nil {
		t.Fatal(err)
	}
	want, got := tensors.MustCopyFlatData[int32](out[0]), tensors.MustCopyFlatData[int32](out[1])
	for b := range B {
		if w, g := want[b*V:(b+1)*V], got[b*V:(b+1)*V]; !slices.Equal(w, g) {
			t.Errorf("row %d (top-k %g, min-p %g, top-p %g) of %v:\n kept %v\n want %v", b, params[3*b], params[3*b+1], params[3*b+2], lp[b*V:(b+1)*V], g, w)
		}
	}
}

// logSoftmax64 is log-softmax in float64, rounded to float32: equal logits
// give equal log-probabilities.
func logSoftmax64(logits []float64) []float32 {
	mx := slices.Max(logits)
	var z float64
	for _, l := range logits {
		z += math.Exp(l - mx)
	}
	out := make([]float32, len(logits))
	for i, l := range logits {
		out[i] = float32(l - mx - math.Log(z))
	}
	return out
}

// TestDigitTopKAtScale checks digitTopK at the 3B preset's ratio, 256 of
// 4096 keys (32 scan blocks), on indexer-like scores: ReLU sums, so many
// exact zeros tie, and −∞ for the cache slots past the row's position.
func TestDigitTopKAtScale(t *testing.T) {
	backend := testutil.Backend(t)
	const S, k, filled = 4096, 256, 3000
	rng := rand.New(rand.NewPCG(9, 10))
	row := make([]float32, S)
	for i := range row {
		switch {
		case i >= filled:
			row[i] = float32(math.Inf(-1))
		case rng.IntN(100) < 95: // about 150 positive: the rest of the 256 are zeros, taken in index order
			row[i] = 0
		default:
			row[i] = float32(rng.ExpFloat64())
		}
	}
	exec, err := graph.NewExec(backend, func(x *graph.Node) *graph.Node {
		idx, _ := digitTopK(graph.Reshape(x, 1, 1, S), k)
		return idx
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	out, err := exec.Exec(tensors.FromFlatDataAndDimensions(row, S))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tensors.MustCopyFlatData[int32](out[0]), bruteTopK(row, k); !slices.Equal(got, want) {
		t.Fatalf("top-%d of %d: got %v…, want %v…", k, S, got[:8], want[:8])
	}
}
