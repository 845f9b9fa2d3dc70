package rl_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/rl"
	"github.com/dsv32/dsv32/train"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// hostKept is engine/sampler.go's truncation, step for step (float64,
// descending probability with ties to the lower id; top-k, min-p, top-p):
// the sorted kept ids, or nil when it keeps the whole vocabulary.
func hostKept(logits []float32, temp float64, tr rl.Truncation) []int32 {
	V := len(logits)
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v)/temp)
	}
	lp := make([]float64, V)
	var sum float64
	for i, v := range logits {
		lp[i] = float64(v)/temp - mx
		sum += math.Exp(lp[i])
	}
	for i := range lp {
		lp[i] -= math.Log(sum)
	}
	order := make([]int32, V)
	for i := range order {
		order[i] = int32(i)
	}
	sort.SliceStable(order, func(a, b int) bool { return lp[order[a]] > lp[order[b]] })
	keep := V
	if tr.TopK > 0 {
		keep = min(keep, tr.TopK)
	}
	if tr.MinP > 0 {
		floor := lp[order[0]] + math.Log(tr.MinP)
		n := 0
		for n < keep && lp[order[n]] >= floor {
			n++
		}
		keep = max(n, 1)
	}
	if tr.TopP > 0 && tr.TopP < 1 {
		var mass float64
		n := 0
		for n < keep {
			mass += math.Exp(lp[order[n]])
			n++
			if mass >= tr.TopP {
				break
			}
		}
		keep = n
	}
	if keep == V {
		return nil
	}
	kept := slices.Clone(order[:keep])
	slices.Sort(kept)
	return kept
}

// TestKeptSetMismatch checks the sort-free monitor against the sampler's
// own algorithm on random logits with deliberate ties, for every kind of
// truncation: identical logits and temperature give no mismatch; perturbed
// logits or another temperature flag exactly the positions whose re-applied
// set differs.
func TestKeptSetMismatch(t *testing.T) {
	const B, T, V = 2, 24, 48
	rng := rand.New(rand.NewPCG(3, 4))
	truncs := []rl.Truncation{
		{}, {TopP: 0.9}, {TopP: 0.5}, {TopK: 5}, {TopK: 100}, {MinP: 0.1}, {TopK: 10, TopP: 0.8},
		{TopK: 8, MinP: 0.05, TopP: 0.7}, {MinP: 0.3, TopP: 0.95}, {TopK: 1}, {TopP: 0.999},
	}
	type scenario struct {
		name  string
		noise float64
		temp  float64 // the trainer's, the sampler's being 1
	}
	scenarios := []scenario{{"same", 0, 1}, {"noise 0.02", 0.02, 1}, {"noise 0.3", 0.3, 1}, {"τ 0.7", 0, 0.7}, {"τ 1.3", 0, 1.3}}
	for _, tr := range truncs {
		for _, sc := range scenarios {
			sampled := make([]float32, B*T*V)
			for i := range sampled {
				v := rng.NormFloat64() * 2
				if i%3 == 0 {
					v = math.Round(v*2) / 2 // ties
				}
				sampled[i] = float32(v)
			}
			trainer := slices.Clone(sampled)
			for i := range trainer {
				trainer[i] += float32(rng.NormFloat64() * sc.noise)
			}
			var sets [][]int32
			Kmax := 1
			for r := range B * T {
				k := hostKept(sampled[r*V:(r+1)*V], 1, tr)
				sets = append(sets, k)
				Kmax = max(Kmax, len(k))
			}
			kept := make([]int32, B*T*Kmax)
			for r, k := range sets {
				for j := range Kmax {
					kept[r*Kmax+j] = -1
					if j < len(k) {
						kept[r*Kmax+j] = k[j]
					}
				}
			}
			out := run(t, func(in []*graph.Node) []*graph.Node {
				differ, mass, size := rl.KeptSetMismatch(in[0], in[1], in[2], sc.temp)
				return []*graph.Node{graph.ConvertDType(differ, mass.DType()), mass, size}
			}, tensors.FromFlatDataAndDimensions(trainer, B, T, V), tensors.FromFlatDataAndDimensions(kept, B, T, Kmax),
				[]float32{float32(tr.TopP), float32(tr.TopK), float32(tr.MinP)})
			wrong, differ := 0, 0
			for r := range B * T {
				row := trainer[r*V : (r+1)*V]
				want := !slices.Equal(hostKept(row, sc.temp, tr), sets[r])
				got := out[0][r] != 0
				if want {
					differ++
				}
				if got != want {
					wrong++
					t.Errorf("%+v, %s, row %d: monitor says differ=%v, the sampler's algorithm %v (recorded %v, re-applied %v)",
						tr, sc.name, r, got, want, sets[r], hostKept(row, sc.temp, tr))
				}
				// The mass the trainer gives the recorded set.
				lp := make([]float64, V)
				for i, v := range row {
					lp[i] = float64(v) / sc.temp
				}
				lp = logSoftmax(lp)
				var m float64
				for i := range V {
					if sets[r] == nil || slices.Contains(sets[r], int32(i)) {
						m += math.Exp(lp[i])
					}
				}
				if math.Abs(m-float64(out[1][r])) > 1e-5 {
					t.Errorf("%+v, %s, row %d: kept mass %.6f, want %.6f", tr, sc.name, r, out[1][r], m)
				}
				if n := len(sets[r]); (n == 0 && out[2][r] != V) || (n > 0 && out[2][r] != float32(n)) {
					t.Errorf("%+v, %s, row %d: |K| %g, want %d", tr, sc.name, r, out[2][r], n)
				}
			}
			if sc.name == "same" && differ != 0 {
				t.Fatalf("the host reference is not deterministic")
			}
			t.Logf("%+v, %s: %d/%d positions differ, monitor wrong on %d", tr, sc.name, differ, B*T, wrong)
		}
	}
}

// TestSamplingMaskMismatch runs the monitor inside the GRPO update on
// rollouts of the tiny reference MoE, for top-k + top-p, top-p alone and
// min-p: with the sampler's weights and temperature the re-applied sets
// equal the recorded ones on every token (with the loss's sampling mask on
// or off); after perturbing the output head they no longer do.
func TestSamplingMaskMismatch(t *testing.T) {
	m := tiny(t)
	backend := testutil.Backend(t)
	samplers := []engine.SampleParams{
		{Temperature: 1, TopP: 0.9, TopK: 40, MaxTokens: 10},
		{Temperature: 1, TopP: 0.3, MaxTokens: 10},
		{Temperature: 0.8, MinP: 0.5, TopP: 0.95, MaxTokens: 10},
	}
	e, err := engine.New(m, backend, engine.Config{MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	batches := make([][]rl.Sample, len(samplers))
	for k, params := range samplers {
		for i := range 4 {
			prompt := []int32{5, 17, 33, int32(40 + 20*i), 250, 99, 7, 18, 64, 3, 11, int32(100 + i)}
			p := params
			p.Seed, p.HasSeed = uint64(i), true
			res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, Params: p, RecordKept: true, RecordRoutes: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Zero advantages: no gradient, so the optimizer leaves the weights as sampled.
			batches[k] = append(batches[k], rl.Sample{Prompt: prompt, Result: res})
		}
	}
	e.Close()
	tc := train.DefaultConfig(train.SFT)
	tc.Steps, tc.LR, tc.MinLR, tc.Warmup, tc.Decay, tc.Batch, tc.SeqLen = 16, 1e-3, 1e-3, 0, 0, 4, 32
	tr, err := train.New(backend, m, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	updaters := map[float64]*rl.Updater{}
	update := func(k int) rl.UpdateStats {
		t.Helper()
		params := samplers[k]
		upd := updaters[params.Temperature]
		if upd == nil {
			if upd, err = rl.NewUpdater(backend, tr, rl.DefaultLoss(), params.Temperature); err != nil {
				t.Fatal(err)
			}
			updaters[params.Temperature] = upd
		}
		upd.Truncation = rl.TruncationOf(params)
		st, err := upd.Update(batches[k])
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for k, params := range samplers {
		st := update(k)
		t.Logf("%+v, unchanged weights: sampling-mask mismatch %.4f, kept mass %.4f, mean |K| %.1f, ρ mean %.6f",
			rl.TruncationOf(params), st.SamplingMaskMismatch, st.KeptMass, st.KeptSize, st.RatioMean)
		if st.SamplingMaskMismatch != 0 {
			t.Errorf("unchanged weights: the re-applied truncation differs from the recorded one on %.3f of tokens", st.SamplingMaskMismatch)
		}
		if st.KeptMass <= 0 || st.KeptMass >= 1 || st.KeptSize < 1 || st.KeptSize >= float64(m.Config.VocabSize) {
			t.Errorf("kept mass %.4f, mean |K| %.1f: the truncation should keep some but not all", st.KeptMass, st.KeptSize)
		}
	}
	// The monitor also runs when the loss ignores the recorded sets.
	updaters[1].KeepMask = false
	if st := update(0); st.SamplingMaskMismatch != 0 {
		t.Errorf("--no-keep-mask: the monitor reports %.3f on unchanged weights", st.SamplingMaskMismatch)
	}
	updaters[1].KeepMask = true

	v := m.Store.GetVariable("/lm_head/weight")
	if v == nil {
		t.Fatal("no /lm_head/weight")
	}
	w := tensors.MustCopyFlatData[float32](v.MustValue())
	rng := rand.New(rand.NewPCG(2, 2))
	for i := range w {
		w[i] += float32(rng.NormFloat64() * 0.003)
	}
	v.MustSetValue(tensors.FromFlatDataAndDimensions(w, v.Shape().Dimensions...))
	for k, params := range samplers {
		st := update(k)
		t.Logf("%+v, perturbed output head: sampling-mask mismatch %.4f, ρ mean %.4f", rl.TruncationOf(params), st.SamplingMaskMismatch, st.RatioMean)
		if st.SamplingMaskMismatch <= 0 {
			t.Errorf("perturbed weights: sampling-mask mismatch %.4f, want > 0", st.SamplingMaskMismatch)
		}
	}
}
