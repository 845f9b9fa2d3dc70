package rl_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/env"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/rl"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train"
)

// digits rewards the share of digits in the completion: an easy, dense
// signal that a few GRPO steps on a tiny model must raise.
type digits struct{}

func (digits) Name() string { return "digits" }
func (digits) Score(_ context.Context, _ env.Example, c env.Completion) (float64, env.Details, error) {
	n, d := 0, 0
	for _, r := range c.Text {
		if unicode.IsSpace(r) {
			continue
		}
		n++
		if unicode.IsDigit(r) {
			d++
		}
	}
	if n == 0 {
		return 0, env.Details{}, nil
	}
	return float64(d) / float64(n), env.Details{}, nil
}

// TestGRPORaisesReward runs the whole loop on the tiny reference MoE: groups
// through the engine with kept sets and routes recorded, two off-policy
// mini-batches per step, the update with every stabiliser on. At mini-batch
// 0 the trainer reproduces the sampler (ρ = 1), and the reward rises.
func TestGRPORaisesReward(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	m := tiny(t)
	text := strings.Repeat("reverse 12345 -> 54321\ncopy 777 -> 777\nsort 3142 -> 1234\nthe cat sat on the mat\n", 40)
	tok, err := tokenizer.Train(slices.Values([]string{text}), 290, tokenizer.TrainOptions{SpecialTokens: tokenizer.DeepSeekSpecialTokens()})
	if err != nil {
		t.Fatal(err)
	}
	backend := testutil.Backend(t)
	tc := train.DefaultConfig(train.SFT)
	tc.Steps, tc.LR, tc.MinLR, tc.Warmup, tc.Decay, tc.Batch, tc.SeqLen = 40, 3e-3, 3e-3, 0, 0, 8, 64
	tr, err := train.New(backend, m, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	upd, err := rl.NewUpdater(backend, tr, rl.DefaultLoss(), 1)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(m, backend, engine.Config{MaxBatch: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	task, err := env.Lookup("reverse:min=3,max=5")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cfg := rl.Config{Steps: 16, PromptsPerStep: 4, MiniBatches: 2, Task: task, Seed: 3, EvalN: 8, Metrics: &log,
		Rollout: rl.RolloutConfig{G: 8, Raw: true, Reward: digits{},
			Params: engine.SampleParams{Temperature: 1, TopK: 64, MaxTokens: 6}}}
	steps, err := rl.Run(context.Background(), eng, upd, tok, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Each step's update makes the engine's cached prefixes stale.
	if n := eng.Stats().WeightChanges; n != int64(cfg.Steps) {
		t.Errorf("the engine heard of %d weight changes in %d steps", n, cfg.Steps)
	}
	mean := func(ms []rl.StepMetrics) float64 {
		var s float64
		for _, m := range ms {
			s += m.Reward
		}
		return s / float64(len(ms))
	}
	first, last := mean(steps[:4]), mean(steps[len(steps)-4:])
	t.Logf("reward: first 4 steps %.3f, last 4 steps %.3f; step 1 mini-batch 0: ρ mean %.6f, |u−a| %.2g, masked %.2f, routing mismatch %.3f",
		first, last, steps[0].RatioMean, steps[0].MismatchAbs, steps[0].Masked, steps[0].RoutingMismatch)
	// Sampler and trainer hold the same weights at every step's mini-batch 0:
	// the re-applied top-k keeps the recorded sets (float noise aside).
	var worst float64
	for _, s := range steps {
		worst = max(worst, s.SamplingMaskMismatch)
	}
	t.Logf("sampling-mask mismatch at mini-batch 0: step 1 %.4f, worst step %.4f; kept mass step 1 %.3f", steps[0].SamplingMaskMismatch, worst, steps[0].KeptMass)
	if worst > 0.01 {
		t.Errorf("the re-applied truncation differs from the sampler's on %.3f of tokens at some step's mini-batch 0", worst)
	}
	if steps[0].RoutingMismatch != 0 {
		t.Errorf("step 1, mini-batch 0: the router's own choice differs from the sampler's on %.3f of pairs with unchanged weights", steps[0].RoutingMismatch)
	}
	for _, s := range steps {
		if d := s.RatioMean - 1; d > 1e-3 || d < -1e-3 {
			t.Errorf("step %d: mean ρ at mini-batch 0 is %.5f: the trainer does not reproduce the sampler", s.Step, s.RatioMean)
		}
	}
	// Mini-batch 1 runs after an optimizer step: its ratios have moved.
	moved := 0.0
	for _, s := range steps {
		if s.OffPolicy == nil {
			t.Fatalf("step %d: no off-policy statistics with μ = 2", s.Step)
		}
		moved = max(moved, s.OffPolicy.MismatchAbs)
	}
	t.Logf("mini-batch 1: largest mean |u−a| %.3g", moved)
	if moved < 1e-4 {
		t.Errorf("mini-batch 1's log-ratios never moved (max mean |u−a| %.3g): the statistics are not off-policy", moved)
	}
	if !strings.Contains(log.String(), `"off_policy"`) {
		t.Error("metrics.jsonl lacks off_policy")
	}
	if last < first+0.1 {
		t.Errorf("GRPO did not raise the reward: %.3f → %.3f", first, last)
	}
	if steps[len(steps)-1].HeldOut == nil || !strings.Contains(log.String(), `"held_out_accuracy"`) {
		t.Error("no held-out evaluation in the metrics")
	}
}

// TestGRPOKLPenalty: with β > 0 the policy is measured against a frozen copy
// of its initial weights: the KL is exactly 0 before the first update and
// positive once the policy has moved.
func TestGRPOKLPenalty(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	m := tiny(t)
	text := strings.Repeat("reverse 12345 -> 54321\ncopy 777 -> 777\n", 40)
	tok, err := tokenizer.Train(slices.Values([]string{text}), 290, tokenizer.TrainOptions{SpecialTokens: tokenizer.DeepSeekSpecialTokens()})
	if err != nil {
		t.Fatal(err)
	}
	backend := testutil.Backend(t)
	tc := train.DefaultConfig(train.SFT)
	tc.Steps, tc.LR, tc.MinLR, tc.Warmup, tc.Decay, tc.Batch, tc.SeqLen = 10, 3e-3, 3e-3, 0, 0, 8, 64
	tr, err := train.New(backend, m, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	loss := rl.DefaultLoss()
	loss.Beta = 0.05
	upd, err := rl.NewUpdater(backend, tr, loss, 1)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(m, backend, engine.Config{MaxBatch: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	task, _ := env.Lookup("copy:min=3,max=4")
	steps, err := rl.Run(context.Background(), eng, upd, tok, rl.Config{Steps: 4, PromptsPerStep: 2, MiniBatches: 1, Task: task, Seed: 5, EvalN: 2,
		Rollout: rl.RolloutConfig{G: 4, Raw: true, Reward: digits{}, Params: engine.SampleParams{Temperature: 1, TopK: 64, MaxTokens: 6}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("KL per step: %.3g %.3g %.3g %.3g", steps[0].KL, steps[1].KL, steps[2].KL, steps[3].KL)
	if k := steps[0].KL; k > 1e-6 || k < -1e-6 {
		t.Errorf("KL before any update is %.3g, want 0", k)
	}
	if steps[3].KL <= 0 {
		t.Errorf("KL after three updates is %.3g, want > 0", steps[3].KL)
	}
}
