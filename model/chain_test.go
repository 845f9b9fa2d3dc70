package model_test

import (
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// argmax is greedy decoding's choice: the first id of the largest logit.
func argmax(logits []float32) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// chainStart is the two-row start both chain tests use: prompts of
// different lengths, prefilled but for their newest tokens, which the
// chain feeds at their positions. prefilled makes a fresh stepper so.
type chainStart struct {
	first, pos []int32
	prefilled  func() *model.Stepper
}

func newChainStart(t *testing.T, f *fixture, capacity int, opts model.Options) chainStart {
	t.Helper()
	backend := testutil.Backend(t)
	prompts := [][]int32{f.ids[:9], f.ids[3:8]}
	c := chainStart{
		first: []int32{prompts[0][len(prompts[0])-1], prompts[1][len(prompts[1])-1]},
		pos:   []int32{int32(len(prompts[0]) - 1), int32(len(prompts[1]) - 1)},
	}
	c.prefilled = func() *model.Stepper {
		st, err := f.m.NewStepper(backend, 2, capacity, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		for b, p := range prompts {
			if _, err := st.StepRow(b, p[:len(p)-1], span(0, len(p)-1), int32(len(p)-2)); err != nil {
				t.Fatal(err)
			}
		}
		return st
	}
	return c
}

// TestChainMatchesSteps checks that chained greedy decoding, fed from the
// device, writes the tokens and caches that step-by-step greedy decoding
// with the host's argmax does, in a batch of two rows at different
// positions; and that ordinary steps carry on from the chained caches. Both
// ways: a program a step, and all steps in one loop on the device.
func TestChainMatchesSteps(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	t.Run("steps", func(t *testing.T) { testChainMatchesSteps(t, f, model.Options{}) })
	t.Run("device loop", func(t *testing.T) { testChainMatchesSteps(t, f, deviceLoopOpts(t)) })
}

// deviceLoopOpts are the options under which chains run as one loop on the
// device: on XLA, and on the Go backend as internal/testutil dresses it.
func deviceLoopOpts(t *testing.T) model.Options {
	t.Helper()
	if !model.CanLoop(testutil.Backend(t)) {
		t.Fatal("the test backend cannot run device loops")
	}
	return model.Options{NativeTopK: true, DigitTopK: true, DeviceLoop: true}
}

// TestLoopsInBackground: with Options.LoopsInBackground the first chain of
// a kind and shape does not wait for its loop to compile but steps from the
// host; once compiled, the next chains run as that loop, built once; the
// tokens are the same either way; a new cache shape compiles anew.
func TestLoopsInBackground(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	const n, capacity = 3, 24
	plain := newChainStart(t, f, capacity, model.Options{})
	ref, err := plain.prefilled().Chain(plain.first, plain.pos, 3*n) // the host's chain: as step by step
	if err != nil {
		t.Fatal(err)
	}
	opts := deviceLoopOpts(t)
	opts.LoopsInBackground = true
	c := newChainStart(t, f, capacity, opts)
	st := c.prefilled()
	tok, pos, done := c.first, c.pos, 0
	chain := func(wantLooped, wantPrograms int64) {
		t.Helper()
		before := st.LoopedSteps()
		got, err := st.Chain(tok, pos, n)
		if err != nil {
			t.Fatal(err)
		}
		if looped := st.LoopedSteps() - before; looped != wantLooped {
			t.Fatalf("%d steps ran in a loop, want %d", looped, wantLooped)
		}
		if err := st.WaitLoops(); err != nil {
			t.Fatal(err)
		}
		if st.LoopPrograms() != wantPrograms {
			t.Fatalf("%d loop programs built, want %d", st.LoopPrograms(), wantPrograms)
		}
		for i, step := range got {
			if !slices.Equal(step, ref[done+i]) {
				t.Fatalf("step %d: tokens %v, want %v", done+i, step, ref[done+i])
			}
		}
		tok, pos, done = got[n-1], []int32{pos[0] + n, pos[1] + n}, done+n
	}
	chain(0, 1) // steps from the host while the loop compiles
	chain(n, 1) // the loop, as compiled
	if err := st.Resize(2, capacity+8); err != nil {
		t.Fatal(err)
	}
	chain(0, 2) // a new shape
}

// checkLooped fails the test unless st ran its chains' n steps inside
// device loops exactly when asked to: a silent fallback to a program a step
// would pass every comparison.
func checkLooped(t *testing.T, st *model.Stepper, opts model.Options, n int) {
	t.Helper()
	want := int64(n)
	if !opts.DeviceLoop {
		want = 0
	}
	if st.DeviceLoop() != opts.DeviceLoop || st.LoopedSteps() != want {
		t.Fatalf("device loop %v, %d steps in loops; asked for a loop: %v, want %d steps", st.DeviceLoop(), st.LoopedSteps(), opts.DeviceLoop, want)
	}
}

func testChainMatchesSteps(t *testing.T, f *fixture, opts model.Options) {
	V := f.m.Config.VocabSize
	const n, capacity = 6, 24
	c := newChainStart(t, f, capacity, opts)
	first, pos := c.first, c.pos

	ref := c.prefilled()
	var want [][]int32
	tok, p := slices.Clone(first), slices.Clone(pos)
	for range n {
		res, err := ref.Step([][]int32{tok[:1], tok[1:]}, [][]int32{p[:1], p[1:]}, []int32{0, 0})
		if err != nil {
			t.Fatal(err)
		}
		tok = []int32{argmax(res.Logits[:V]), argmax(res.Logits[V:])}
		p = []int32{p[0] + 1, p[1] + 1}
		want = append(want, tok)
	}

	st := c.prefilled()
	got, err := st.Chain(first, pos, n)
	if err != nil {
		t.Fatal(err)
	}
	checkLooped(t, st, opts, n)
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("chained tokens %v, step by step %v", got, want)
	}
	// The caches agree too: one more ordinary step gives the same logits.
	next := [][]int32{want[n-1][:1], want[n-1][1:]}
	at := [][]int32{p[:1], p[1:]}
	a, err := ref.Step(next, at, []int32{0, 0})
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Step(next, at, []int32{0, 0})
	if err != nil {
		t.Fatal(err)
	}
	if rel, _ := testutil.RelErr(b.Logits, a.Logits); rel > testutil.Tol(1e-5) {
		t.Errorf("a step after the chain: logits differ from the step-by-step run's, relative error %.3g", rel)
	}

	for _, c := range []struct {
		name       string
		tokens     []int32
		pos        []int32
		n          int
		wantErrSub string
	}{
		{"no steps", first, pos, 0, "at least 1"},
		{"one row short", first[:1], pos[:1], 2, "for 2 rows"},
		{"past the capacity", first, []int32{capacity - 2, 3}, 4, "capacity"},
		{"bad token", []int32{int32(V), 1}, pos, 1, "vocabulary"},
	} {
		if _, err := st.Chain(c.tokens, c.pos, c.n); err == nil || !strings.Contains(err.Error(), c.wantErrSub) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.wantErrSub)
		}
	}
}

// logSoftmax is log softmax(logits / t) in float64.
func logSoftmax(logits []float32, t float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v)/t)
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v)/t - mx)
	}
	out := make([]float64, len(logits))
	for i, v := range logits {
		out[i] = float64(v)/t - mx - math.Log(z)
	}
	return out
}

// hostKept is the host sampler's cut, the definition the device must
// follow: in descending order (ties: lower id first), top-k, then min-p
// (at least one), then top-p (tokens while the mass before them is under
// top-p). It returns the kept ids.
func hostKept(lp []float64, d model.Draw) []int32 {
	order := make([]int32, len(lp))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmpDesc(lp[a], lp[b]) })
	keep := len(order)
	if d.TopK > 0 {
		keep = min(keep, d.TopK)
	}
	if d.MinP > 0 {
		floor := lp[order[0]] + math.Log(float64(d.MinP))
		n := 0
		for n < keep && lp[order[n]] >= floor {
			n++
		}
		keep = max(n, 1)
	}
	if d.TopP > 0 && d.TopP < 1 {
		var mass float64
		n := 0
		for n < keep {
			mass += math.Exp(lp[order[n]])
			n++
			if mass >= float64(d.TopP) {
				break
			}
		}
		keep = n
	}
	return order[:keep]
}

// TestChainSample checks tokens drawn on the device against the host's
// definitions: greedy rows equal greedy steps; every drawn token is one the
// host's cut keeps, and its log-probabilities (the model's, and the
// tempered, renormalised one it was drawn from) equal the host's from the
// logits a step-by-step run gives for the same tokens; and the draws follow
// the kept distribution.
func TestChainSample(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	// The cut by sorting the vocabulary, and by digit search (DigitTopK).
	t.Run("sorted", func(t *testing.T) { testChainSample(t, f, model.Options{}) })
	t.Run("digits", func(t *testing.T) { testChainSample(t, f, model.Options{NativeTopK: true, DigitTopK: true}) })
	t.Run("device loop", func(t *testing.T) { testChainSample(t, f, deviceLoopOpts(t)) })
}

func testChainSample(t *testing.T, f *fixture, opts model.Options) {
	V := f.m.Config.VocabSize
	const n, capacity = 6, 24
	c := newChainStart(t, f, capacity, opts)
	first, pos := c.first, c.pos
	st, ref := c.prefilled(), c.prefilled()

	for i, draws := range [][]model.Draw{
		{{}, {Temperature: 0.7}},
		{{Temperature: 1, TopK: 5, Kept: true}, {Temperature: 1, TopP: 0.5, Kept: true}}, // kept sets reported too
		{{Temperature: 0.8, MinP: 0.3}, {Temperature: 1.2, TopK: 40, MinP: 0.05, TopP: 0.3}},
		{{Top: 5}, {Temperature: 1, TopP: 0.9, Top: model.MaxTop}}, // alternatives, for greedy and sampled rows
		// Penalties, with counts from before the chain; the greedy row ignores them.
		{{Presence: 1, Frequency: 2, Counts: map[int32]int{5: 3}},
			{Temperature: 0.9, TopK: 50, Presence: 1.5, Frequency: 0.5, Counts: map[int32]int{3: 2, 17: 1, 42: 4, 100: 1}}},
		// Seeded draws: the tokens are the host's, from the seed's noise.
		{{Temperature: 1, Seeded: true, Seed: 7, Drawn: 3}, {Temperature: 0.7, TopK: 40, TopP: 0.8, Seeded: true, Seed: 1 << 40}},
		// Routes, for the row that asks (RL's keep routing).
		{{Routes: true}, {Temperature: 1, Seeded: true, Seed: 3, Routes: true, Top: 2}},
		{{}, {Temperature: 1, Routes: true}},
	} {
		got, err := st.ChainSample(first, pos, draws, 42, n)
		if err != nil {
			t.Fatal(err)
		}
		checkLooped(t, st, opts, (i+1)*n)
		if len(got) != n {
			t.Fatalf("%v: %d steps drawn, want %d", draws, len(got), n)
		}
		// Replay the drawn tokens step by step and score them on the host.
		tok, p := slices.Clone(first), slices.Clone(pos)
		counts := make([]map[int32]int, len(draws)) // what the penalties count, drawn tokens included
		for b, d := range draws {
			counts[b] = maps.Clone(d.Counts)
			if counts[b] == nil {
				counts[b] = map[int32]int{}
			}
		}
		for i, step := range got {
			res, err := ref.Step([][]int32{tok[:1], tok[1:]}, [][]int32{p[:1], p[1:]}, []int32{0, 0})
			if err != nil {
				t.Fatal(err)
			}
			routes := res.Routes() // per MoE layer, [rows·K]
			for b, d := range draws {
				logits := res.Logits[b*V : (b+1)*V]
				c := step[b]
				if !d.Routes && c.Routes != nil || d.Routes && len(c.Routes) != len(routes) {
					t.Errorf("%+v step %d: routes %v, want %d layers", d, i, c.Routes, len(routes))
				}
				for l, r := range c.Routes {
					K := len(routes[l]) / len(draws)
					if want := routes[l][b*K : (b+1)*K]; !slices.Equal(r, want) {
						t.Errorf("%+v step %d: layer %d routes %v, a step's %v", d, i, l, r, want)
					}
				}
				own := logSoftmax(logits, 1)
				if want := own[c.ID]; math.Abs(float64(c.Logprob)-want) > 1e-4 {
					t.Errorf("%+v step %d: logprob %g, host %g", d, i, c.Logprob, want)
				}
				// The alternatives: the host's order (descending, ties to
				// the lower id) and values.
				order := make([]int32, V)
				for id := range order {
					order[id] = int32(id)
				}
				slices.SortStableFunc(order, func(a, b int32) int { return cmpDesc(own[a], own[b]) })
				if len(c.Top) != d.Top {
					t.Errorf("%+v step %d: %d alternatives, want %d", d, i, len(c.Top), d.Top)
				}
				for j, alt := range c.Top {
					if alt.ID != order[j] || !(math.Abs(float64(alt.Logprob)-own[alt.ID]) <= 1e-4) {
						t.Errorf("%+v step %d: alternative %d is %+v, host %d (%g)", d, i, j, alt, order[j], own[order[j]])
					}
				}
				if d.Temperature == 0 {
					if want := argmax(logits); c.ID != want || c.SampleLogprob != 0 {
						t.Errorf("greedy step %d: id %d (sample logprob %g), want %d (0)", i, c.ID, c.SampleLogprob, want)
					}
					continue
				}
				adj := slices.Clone(logits)
				for id, n := range counts[b] {
					adj[id] -= float32(float64(d.Frequency)*float64(n) + float64(d.Presence))
				}
				counts[b][c.ID]++
				lp := logSoftmax(adj, float64(d.Temperature))
				kept := hostKept(lp, d)
				if d.Kept {
					want := slices.Sorted(slices.Values(kept))
					if len(want) == V {
						want = nil
					}
					if !slices.Equal(c.Kept, want) {
						t.Errorf("%+v step %d: kept %v, the host's cut %v", d, i, c.Kept, want)
					}
				} else if c.Kept != nil {
					t.Errorf("%+v step %d: kept %v, not asked for", d, i, c.Kept)
				}
				if !slices.Contains(kept, c.ID) {
					t.Errorf("%+v step %d: drew %d, which the host's cut (%d tokens) drops", d, i, c.ID, len(kept))
					continue
				}
				var z float64
				for _, id := range kept {
					z += math.Exp(lp[id])
				}
				if want := lp[c.ID] - math.Log(z); math.Abs(float64(c.SampleLogprob)-want) > 1e-4 {
					t.Errorf("%+v step %d: sample logprob %g, host %g", d, i, c.SampleLogprob, want)
				}
				if d.Seeded {
					want, best := int32(-1), float32(math.Inf(-1))
					for _, id := range kept {
						if v := float32(lp[id]) + model.SeededGumbel(model.SeedKey(d.Seed), uint32(d.Drawn+i), id); v > best {
							want, best = id, v
						}
					}
					if c.ID != want {
						t.Errorf("%+v step %d: drew %d, the seed's noise gives %d", d, i, c.ID, want)
					}
				}
			}
			tok = []int32{step[0].ID, step[1].ID}
			p = []int32{p[0] + 1, p[1] + 1}
		}
	}

	// Row 1's first draw over many seeds, against the kept distribution, at
	// settings that make a few tokens likely (the tiny model's logits are
	// nearly flat): the frequencies of tokens with p ≥ 0.01 within 4.5
	// standard deviations, and nothing outside the cut. Seeded draws too,
	// whose noise is the seed's hash rather than the generator's.
	res, err := ref.Step([][]int32{first[:1], first[1:]}, [][]int32{pos[:1], pos[1:]}, []int32{0, 0})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []model.Draw{{Temperature: 0.05}, {Temperature: 0.1, TopK: 3}, {Temperature: 0.2, TopP: 0.6},
		{Temperature: 0.05, Seeded: true}, {Temperature: 0.2, TopP: 0.6, Seeded: true}} {
		lp := logSoftmax(res.Logits[V:], float64(d.Temperature))
		kept := hostKept(lp, d)
		var z float64
		for _, id := range kept {
			z += math.Exp(lp[id])
		}
		const draws = 500
		counts := map[int32]int{}
		for seed := range int64(draws) {
			d.Seed = uint64(seed) * 0x9e3779b97f4a7c15 // for seeded draws; the chain's seed for the others
			got, err := st.ChainSample(first, pos, []model.Draw{{}, d}, seed, 1)
			if err != nil {
				t.Fatal(err)
			}
			counts[got[0][1].ID]++
		}
		for id, c := range counts {
			if !slices.Contains(kept, id) {
				t.Errorf("%+v: drew %d (%d times), which the host's cut drops", d, id, c)
			}
		}
		for _, id := range kept {
			p := math.Exp(lp[id]) / z
			if p < 0.01 {
				break // too rare for 500 draws to say much
			}
			sd := math.Sqrt(p * (1 - p) / draws)
			if got := float64(counts[id]) / draws; math.Abs(got-p) > 4.5*sd+1e-9 {
				t.Errorf("%+v: token %d drawn %.3f of the time, the kept distribution gives %.3f (sd %.3f)", d, id, got, p, sd)
			}
		}
	}

	for _, c := range []struct {
		name  string
		draws []model.Draw
		sub   string
	}{
		{"one draw short", []model.Draw{{}}, "draws for 2 rows"},
		{"negative temperature", []model.Draw{{}, {Temperature: -1}}, "outside [0, 100]"},
		{"NaN temperature", []model.Draw{{Temperature: float32(math.NaN())}, {}}, "outside [0, 100]"},
		{"negative top-k", []model.Draw{{}, {Temperature: 1, TopK: -2}}, "top-k -2"},
		{"top-p above 1", []model.Draw{{}, {Temperature: 1, TopP: 1.5}}, "top-p 1.5"},
		{"min-p NaN", []model.Draw{{}, {Temperature: 1, MinP: float32(math.NaN())}}, "min-p"},
		{"too many alternatives", []model.Draw{{Top: model.MaxTop + 1}, {}}, "alternatives"},
		{"penalty outside", []model.Draw{{}, {Temperature: 1, Frequency: 3}}, "penalties"},
	} {
		if _, err := st.ChainSample(first, pos, c.draws, 1, 1); err == nil || !strings.Contains(err.Error(), c.sub) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.sub)
		}
	}
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// TestStepperKeepsItsPrograms: a stepper runs at more cache shapes than
// GoMLX's executors keep programs for by default (32), as a server's
// engine does over its life; none is refused.
func TestStepperKeepsItsPrograms(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	st, err := f.m.NewStepper(testutil.Backend(t), 1, 8, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for rows := 1; rows <= 40; rows++ {
		if err := st.Resize(rows, 8); err != nil {
			t.Fatal(err)
		}
		tokens, pos := make([][]int32, rows), make([][]int32, rows)
		for b := range tokens {
			tokens[b], pos[b] = []int32{1}, []int32{0}
		}
		if _, err := st.Step(tokens, pos, make([]int32, rows)); err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
		if err := st.CopyRow(rows-1, 0); err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
	}
}

// TestSaveLoadRow: a row's prefix copied to the host and written into a row
// of another stepper, of another shape, continues as the original does: the
// next step's logits are the same. Bad rows and lengths are refused.
func TestSaveLoadRow(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	backend := testutil.Backend(t)
	prompt := f.ids[:11]
	n := len(prompt) - 1
	src, err := f.m.NewStepper(backend, 2, 32, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.StepRow(1, prompt[:n], span(0, n), int32(n-1)); err != nil {
		t.Fatal(err)
	}
	rc, err := src.SaveRow(1, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Free()
	if rc.Len() != n || rc.Bytes() <= 0 {
		t.Fatalf("copy of %d positions: Len %d, Bytes %d", n, rc.Len(), rc.Bytes())
	}
	// The source's row goes on to another sequence; the copy stays.
	if _, err := src.StepRow(1, f.ids[20:30], span(0, 10), 9); err != nil {
		t.Fatal(err)
	}
	dst, err := f.m.NewStepper(backend, 4, 64, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.LoadRow(2, rc); err != nil {
		t.Fatal(err)
	}
	got, err := dst.StepRow(2, prompt[n:], []int32{int32(n)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := f.m.NewStepper(backend, 1, 32, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want, err := ref.StepRow(0, prompt, span(0, n+1), int32(n))
	if err != nil {
		t.Fatal(err)
	}
	if rel, _ := testutil.RelErr(got.Logits, want.Logits); rel > testutil.Tol(1e-5) {
		t.Errorf("after LoadRow: logits differ from a prefill's, relative error %.3g", rel)
	}
	for _, c := range []struct {
		name string
		err  func() error
		sub  string
	}{
		{"save: row outside", func() error { _, err := src.SaveRow(2, 4); return err }, "outside"},
		{"save: longer than the cache", func() error { _, err := src.SaveRow(0, 33); return err }, "capacity"},
		{"save: nothing", func() error { _, err := src.SaveRow(0, 0); return err }, "positions"},
		{"load: row outside", func() error { return dst.LoadRow(4, rc) }, "outside"},
	} {
		if err := c.err(); err == nil || !strings.Contains(err.Error(), c.sub) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.sub)
		}
	}
	small, err := f.m.NewStepper(backend, 1, 8, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if err := small.LoadRow(0, rc); err == nil || !strings.Contains(err.Error(), "capacity") {
		t.Errorf("load into a smaller cache: error %v, want one saying it does not fit", err)
	}
}
