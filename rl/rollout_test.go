package rl_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/env"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/rl"
	"github.com/dsv32/dsv32/tokenizer"
)

// TestCollect samples groups from the tiny reference model with a tokenizer
// small enough for its 320-token vocabulary, and checks the bookkeeping the
// update relies on: grouping, zero-mean advantages, records aligned with
// tokens, rewards from the verifier.
func TestCollect(t *testing.T) {
	m := tiny(t)
	text := strings.Repeat("reverse 12345 -> 54321\ncopy 777 -> 777\nsort 3142 -> 1234\n", 50)
	tok, err := tokenizer.Train(slices.Values([]string{text}), 290, tokenizer.TrainOptions{SpecialTokens: tokenizer.DeepSeekSpecialTokens()})
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() > m.Config.VocabSize {
		t.Fatalf("tokenizer has %d ids, the model %d", tok.VocabSize(), m.Config.VocabSize)
	}
	task, err := env.Lookup("reverse:min=3,max=5")
	if err != nil {
		t.Fatal(err)
	}
	examples := env.Sample(task, env.Train, 1, 3)
	e, err := engine.New(m, testutil.Backend(t), engine.Config{MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	eos, _ := tok.TokenToID("<｜end▁of▁sentence｜>")
	cfg := rl.RolloutConfig{G: 4, Raw: true, Seed: 7, Reward: env.Outcome{},
		Params: engine.SampleParams{Temperature: 1, TopP: 0.95, MaxTokens: 8, StopTokens: []int32{int32(eos)}}}
	samples, st, err := rl.Collect(context.Background(), e, tok, examples, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 12 {
		t.Fatalf("%d samples, want 3 prompts × 4", len(samples))
	}
	for g := range 3 {
		var sum float64
		for _, s := range samples[g*4 : g*4+4] {
			sum += s.Adv
			if s.Example.Key != examples[g].Key {
				t.Errorf("group %d holds a sample of %s", g, s.Example.Key)
			}
		}
		if math.Abs(sum) > 1e-12 {
			t.Errorf("group %d advantages sum to %g", g, sum)
		}
	}
	for n, s := range samples {
		if got, want := len(s.Result.Routes), len(s.Prompt)+len(s.Result.Tokens)-1; got != want {
			t.Errorf("sample %d: %d route records for %d processed positions", n, got, want)
		}
		if s.Reward != 0 && s.Reward != 1 {
			t.Errorf("sample %d: outcome reward %g", n, s.Reward)
		}
	}
	if st.Tokens == 0 || st.MeanLength == 0 {
		t.Errorf("stats %+v", st)
	}
	// Same seed, same samples.
	again, _, err := rl.Collect(context.Background(), e, tok, examples, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for n := range samples {
		if samples[n].Text != again[n].Text {
			t.Fatalf("sample %d differs between two runs with the same seed", n)
		}
	}
}
