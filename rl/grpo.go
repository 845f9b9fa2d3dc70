package rl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/env"
)

// Config is one GRPO run (rl.md §1, §12).
type Config struct {
	Steps          int
	PromptsPerStep int
	MiniBatches    int // μ: optimizer steps per rollout batch (off-policy after the first)
	Rollout        RolloutConfig
	Task           env.Task
	Seed           uint64
	EvalEvery      int // steps between held-out evaluations (0: only at the end)
	EvalN          int // held-out problems per evaluation
	Metrics        io.Writer
}

// StepMetrics is one line of metrics.jsonl.
type StepMetrics struct {
	Step       int     `json:"step"`
	Reward     float64 `json:"reward_mean"`
	RewardStd  float64 `json:"reward_std"`
	FlatGroups float64 `json:"flat_groups"`
	Length     float64 `json:"response_length"`
	Truncated  float64 `json:"truncated"`
	UpdateStats
	// OffPolicy averages the statistics of mini-batches 1…μ−1, taken after
	// the policy moved: where clipping and OPSM act (at mini-batch 0 the
	// ratios are 1 up to numerics, so the top-level clip and mask shares
	// monitor the sampler/trainer mismatch instead).
	OffPolicy     *UpdateStats `json:"off_policy,omitempty"`
	HeldOut       *float64     `json:"held_out_accuracy,omitempty"`
	RolloutTokS   float64      `json:"rollout_tokens_per_s"`
	TrainTokS     float64      `json:"train_tokens_per_s"`
	RolloutSecond float64      `json:"rollout_s"`
	UpdateSecond  float64      `json:"update_s"`
}

// Run trains the updater's policy with GRPO. The engine must run the same
// model (the same store): updated weights are what it samples with next, so
// publishing is free.
func Run(ctx context.Context, eng *engine.Engine, upd *Updater, tok Tokenizer, cfg Config) ([]StepMetrics, error) {
	if cfg.Steps < 1 || cfg.PromptsPerStep < 1 || cfg.MiniBatches < 1 || cfg.Task == nil {
		return nil, fmt.Errorf("rl: steps %d, prompts %d, mini-batches %d, task %v", cfg.Steps, cfg.PromptsPerStep, cfg.MiniBatches, cfg.Task)
	}
	// The sampling-mask monitor re-applies the rollout's truncation.
	upd.Truncation = Truncation{}
	if cfg.Rollout.Params.Temperature > 0 {
		upd.Truncation = TruncationOf(cfg.Rollout.Params)
	}
	var all []StepMetrics
	enc := json.NewEncoder(io.Discard)
	if cfg.Metrics != nil {
		enc = json.NewEncoder(cfg.Metrics)
	}
	for step := 1; step <= cfg.Steps; step++ {
		t0 := time.Now()
		examples := env.Sample(cfg.Task, env.Train, cfg.Seed+uint64(step)*1_000_003, cfg.PromptsPerStep)
		rc := cfg.Rollout
		rc.Seed = cfg.Seed + uint64(step)*7919
		samples, gs, err := Collect(ctx, eng, tok, examples, rc)
		if err != nil {
			return all, err
		}
		rollout := time.Since(t0)
		t1 := time.Now()
		met := StepMetrics{Step: step, Reward: gs.RewardMean, RewardStd: gs.RewardStd, FlatGroups: gs.FlatGroups,
			Length: gs.MeanLength, Truncated: gs.Truncated, RolloutSecond: rollout.Seconds()}
		// μ mini-batches, each an optimizer step; groups stay whole.
		per := (cfg.PromptsPerStep + cfg.MiniBatches - 1) / cfg.MiniBatches * rc.G
		trained := 0
		var off []UpdateStats
		for i, at := 0, 0; at < len(samples); i, at = i+1, at+per {
			batch := samples[at:min(at+per, len(samples))]
			st, err := upd.Update(batch)
			if err != nil {
				return all, fmt.Errorf("rl: step %d, mini-batch %d: %w", step, i, err)
			}
			if i == 0 {
				met.UpdateStats = st // mini-batch 0: the sampler/trainer mismatch monitor
			} else {
				off = append(off, st)
			}
			for _, s := range batch {
				trained += len(s.Prompt) + len(s.Result.Tokens)
			}
		}
		// The engine's caches hold the old policy's keys: none may be reused.
		eng.WeightsChanged()
		if len(off) > 0 {
			m := meanStats(off)
			met.OffPolicy = &m
		}
		met.UpdateSecond = time.Since(t1).Seconds()
		met.RolloutTokS = float64(gs.Tokens) / rollout.Seconds()
		met.TrainTokS = float64(trained) / met.UpdateSecond
		if (cfg.EvalEvery > 0 && step%cfg.EvalEvery == 0) || step == cfg.Steps {
			acc, err := Evaluate(ctx, eng, tok, cfg.Task, cfg.Rollout, cfg.Seed, cfg.EvalN)
			if err != nil {
				return all, err
			}
			met.HeldOut = &acc
		}
		all = append(all, met)
		if err := enc.Encode(met); err != nil {
			return all, err
		}
	}
	return all, nil
}

// meanStats averages mini-batches' statistics field by field.
func meanStats(sts []UpdateStats) UpdateStats {
	var m UpdateStats
	mv := reflect.ValueOf(&m).Elem()
	for _, st := range sts {
		sv := reflect.ValueOf(st)
		for i := range sv.NumField() {
			mv.Field(i).SetFloat(mv.Field(i).Float() + sv.Field(i).Float()/float64(len(sts)))
		}
	}
	return m
}

// Evaluate is greedy pass@1 on n held-out problems of the task.
func Evaluate(ctx context.Context, eng *engine.Engine, tok Tokenizer, task env.Task, rc RolloutConfig, seed uint64, n int) (float64, error) {
	if n < 1 {
		n = 64
	}
	examples := env.Sample(task, env.Test, seed^0xe7a1, n)
	rc.G = 1
	rc.Params.Temperature, rc.Params.TopP, rc.Params.TopK, rc.Params.MinP = 0, 0, 0, 0
	rc.Reward = env.Outcome{}
	samples, _, err := Collect(ctx, eng, tok, examples, rc)
	if err != nil {
		return 0, err
	}
	correct := 0
	for _, s := range samples {
		c := env.Completion{Text: s.Text, Thinking: rc.Thinking, Raw: rc.Raw, Tokens: len(s.Result.Tokens), Truncated: s.Truncated}
		if v, _ := env.Grade(s.Example, c); v == env.Correct {
			correct++
		}
	}
	return float64(correct) / float64(len(samples)), nil
}
