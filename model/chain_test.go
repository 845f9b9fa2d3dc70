package model_test

import (
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
