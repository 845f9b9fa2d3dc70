package model_test

import (
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

// TestChainMatchesSteps checks that chained greedy decoding, fed from the
// device, writes the tokens and caches that step-by-step greedy decoding
// with the host's argmax does, in a batch of two rows at different
// positions; and that ordinary steps carry on from the chained caches.
func TestChainMatchesSteps(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	backend := testutil.Backend(t)
	V := f.m.Config.VocabSize
	prompts := [][]int32{f.ids[:9], f.ids[3:8]} // rows of different lengths
	const n, capacity = 6, 24
	newPrefilled := func() *model.Stepper {
		st, err := f.m.NewStepper(backend, 2, capacity, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for b, p := range prompts { // all but each prompt's last token
			if _, err := st.StepRow(b, p[:len(p)-1], span(0, len(p)-1), int32(len(p)-2)); err != nil {
				t.Fatal(err)
			}
		}
		return st
	}
	first := []int32{prompts[0][len(prompts[0])-1], prompts[1][len(prompts[1])-1]}
	pos := []int32{int32(len(prompts[0]) - 1), int32(len(prompts[1]) - 1)}

	ref := newPrefilled()
	defer ref.Close()
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

	st := newPrefilled()
	defer st.Close()
	got, err := st.Chain(first, pos, n)
	if err != nil {
		t.Fatal(err)
	}
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

// TestChainSample checks tokens drawn on the device: greedy rows equal
// greedy steps; every token's log-probabilities equal the host's from the
// logits a step-by-step run gives for the same tokens; and the draws follow
// softmax(logits / T).
func TestChainSample(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	backend := testutil.Backend(t)
	V := f.m.Config.VocabSize
	prompts := [][]int32{f.ids[:9], f.ids[3:8]}
	temps := []float32{0, 0.7}
	const n, capacity = 6, 24
	newPrefilled := func() *model.Stepper {
		st, err := f.m.NewStepper(backend, 2, capacity, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for b, p := range prompts {
			if _, err := st.StepRow(b, p[:len(p)-1], span(0, len(p)-1), int32(len(p)-2)); err != nil {
				t.Fatal(err)
			}
		}
		return st
	}
	first := []int32{prompts[0][len(prompts[0])-1], prompts[1][len(prompts[1])-1]}
	pos := []int32{int32(len(prompts[0]) - 1), int32(len(prompts[1]) - 1)}

	st := newPrefilled()
	defer st.Close()
	got, err := st.ChainSample(first, pos, temps, 42, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d steps drawn, want %d", len(got), n)
	}
	// Replay the drawn tokens step by step and score them on the host.
	ref := newPrefilled()
	defer ref.Close()
	tok, p := slices.Clone(first), slices.Clone(pos)
	for i, step := range got {
		res, err := ref.Step([][]int32{tok[:1], tok[1:]}, [][]int32{p[:1], p[1:]}, []int32{0, 0})
		if err != nil {
			t.Fatal(err)
		}
		for b := range 2 {
			logits := res.Logits[b*V : (b+1)*V]
			d := step[b]
			if d.ID < 0 || int(d.ID) >= V {
				t.Fatalf("step %d row %d: id %d outside the vocabulary", i, b, d.ID)
			}
			if temps[b] == 0 {
				if want := argmax(logits); d.ID != want || d.SampleLogprob != 0 {
					t.Errorf("step %d greedy row: id %d (sample logprob %g), want %d (0)", i, d.ID, d.SampleLogprob, want)
				}
			} else if want := logSoftmax(logits, float64(temps[b]))[d.ID]; math.Abs(float64(d.SampleLogprob)-want) > 1e-4 {
				t.Errorf("step %d row %d: sample logprob %g, host %g", i, b, d.SampleLogprob, want)
			}
			if want := logSoftmax(logits, 1)[d.ID]; math.Abs(float64(d.Logprob)-want) > 1e-4 {
				t.Errorf("step %d row %d: logprob %g, host %g", i, b, d.Logprob, want)
			}
		}
		tok = []int32{step[0].ID, step[1].ID}
		p = []int32{p[0] + 1, p[1] + 1}
	}

	// The first draw of row 1, over many seeds, against softmax(logits / T)
	// at a temperature that makes a few tokens likely (the tiny model's
	// logits are nearly flat): the frequencies of the likeliest tokens (p ≥
	// 0.01) within 4.5 standard deviations.
	res, err := ref.Step([][]int32{first[:1], first[1:]}, [][]int32{pos[:1], pos[1:]}, []int32{0, 0})
	if err != nil {
		t.Fatal(err)
	}
	sharp := []float32{0, 0.05}
	lp := logSoftmax(res.Logits[V:], float64(sharp[1]))
	const draws = 600
	counts := map[int32]int{}
	for seed := range int64(draws) {
		d, err := st.ChainSample(first, pos, sharp, seed, 1)
		if err != nil {
			t.Fatal(err)
		}
		counts[d[0][1].ID]++
	}
	order := make([]int32, V)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmpDesc(lp[a], lp[b]) })
	for _, id := range order[:5] {
		p := math.Exp(lp[id])
		if p < 0.01 {
			break // too rare for 600 draws to say much
		}
		sd := math.Sqrt(p * (1 - p) / draws)
		if got := float64(counts[id]) / draws; math.Abs(got-p) > 4.5*sd+1e-9 {
			t.Errorf("token %d drawn %.3f of the time, softmax gives %.3f (sd %.3f)", id, got, p, sd)
		}
	}

	for _, c := range []struct {
		name  string
		temps []float32
		sub   string
	}{
		{"one temperature short", temps[:1], "temperatures for 2 rows"},
		{"negative temperature", []float32{0, -1}, "outside [0, 100]"},
		{"NaN temperature", []float32{float32(math.NaN()), 1}, "outside [0, 100]"},
	} {
		if _, err := st.ChainSample(first, pos, c.temps, 1, 1); err == nil || !strings.Contains(err.Error(), c.sub) {
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
