package rl

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/env"
)

// Tokenizer is what rollouts need of a tokenizer (tokenizer.BPE has it).
type Tokenizer interface {
	Encode(text string) []int
	Decode(ids []int) string
}

// RolloutConfig says how groups are sampled and scored (rl.md §1).
type RolloutConfig struct {
	G        int                 // responses per prompt
	Params   engine.SampleParams // temperature, top-p/top-k, max tokens, stop tokens (EOS)
	Seed     uint64              // sample j of a step is drawn with seed Seed+j
	Thinking bool                // open <think> in the prompt
	Raw      bool                // prompt with the example's text alone, no chat format (tiny ladder models)
	Reward   env.Reward
	StdAdv   bool // divide advantages by the group's std (off in V3.2)
}

// Sample is one scored response with what the update needs.
type Sample struct {
	Example   env.Example
	Prompt    []int32
	Result    *engine.Result // tokens with a_t, kept sets, routes
	Text      string
	Reward    float64
	Details   env.Details
	Adv       float64
	Truncated bool
}

// GroupStats summarise a rollout batch (rl.md §10).
type GroupStats struct {
	RewardMean, RewardStd float64
	FlatGroups            float64 // share of groups whose rewards are all equal (no gradient)
	MeanLength            float64
	Truncated             float64
	Tokens                int
}

// PromptText renders an example as the prompt the policy continues.
func PromptText(ex env.Example, thinking, raw bool) (string, error) {
	if raw {
		return ex.Prompt, nil
	}
	return chat.Encode(ex.Chat(), chat.Options{Thinking: thinking, DropThinking: true, AddBOS: true})
}

// Collect samples G responses for every example through the engine (all at
// once, so the engine batches them), scores them and computes group
// advantages. Samples come back grouped: example i's responses are
// [i·G, (i+1)·G).
func Collect(ctx context.Context, eng *engine.Engine, tok Tokenizer, examples []env.Example, cfg RolloutConfig) ([]Sample, GroupStats, error) {
	if cfg.G < 1 {
		return nil, GroupStats{}, fmt.Errorf("rollout: group size %d", cfg.G)
	}
	samples := make([]Sample, len(examples)*cfg.G)
	errs := make([]error, len(samples))
	var wg sync.WaitGroup
	for i, ex := range examples {
		text, err := PromptText(ex, cfg.Thinking, cfg.Raw)
		if err != nil {
			return nil, GroupStats{}, fmt.Errorf("rollout: example %d (%s): %w", i, ex.Key, err)
		}
		ids := tok.Encode(text)
		prompt := make([]int32, len(ids))
		for k, id := range ids {
			prompt[k] = int32(id)
		}
		for j := range cfg.G {
			n := i*cfg.G + j
			p := cfg.Params
			p.Seed, p.HasSeed = cfg.Seed+uint64(n), true
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := eng.Generate(ctx, engine.Request{Prompt: prompt, Params: p, RecordKept: true, RecordRoutes: true}, nil)
				if err != nil {
					errs[n] = err
					return
				}
				samples[n] = Sample{Example: ex, Prompt: prompt, Result: res, Truncated: res.Finish == engine.FinishLength}
			}()
		}
	}
	wg.Wait()
	for n, err := range errs {
		if err != nil {
			return nil, GroupStats{}, fmt.Errorf("rollout: sample %d: %w", n, err)
		}
	}
	// Score every sample at once: a judge reward (env.Rubric) spends its
	// time waiting on the network and bounds its own concurrency.
	rewards := make([]float64, len(samples))
	var st GroupStats
	for n := range samples {
		s := &samples[n]
		ids := make([]int, len(s.Result.Tokens))
		for k, t := range s.Result.Tokens {
			ids[k] = int(t.ID)
		}
		s.Text = tok.Decode(ids)
		st.MeanLength += float64(len(ids))
		st.Tokens += len(ids)
		if s.Truncated {
			st.Truncated++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := env.Completion{Text: s.Text, Thinking: cfg.Thinking, Raw: cfg.Raw, Tokens: len(ids), Truncated: s.Truncated}
			r, d, err := cfg.Reward.Score(ctx, s.Example, c)
			if err != nil {
				errs[n] = fmt.Errorf("rollout: reward of sample %d: %w", n, err)
				return
			}
			s.Reward, s.Details = r, d
			rewards[n] = r
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, GroupStats{}, err
		}
	}
	adv := Advantages(rewards, cfg.G, cfg.StdAdv)
	for n := range samples {
		samples[n].Adv = adv[n]
	}
	N := float64(len(samples))
	for _, r := range rewards {
		st.RewardMean += r / N
	}
	for _, r := range rewards {
		st.RewardStd += (r - st.RewardMean) * (r - st.RewardMean) / N
	}
	st.RewardStd = math.Sqrt(st.RewardStd)
	for i := 0; i < len(rewards); i += cfg.G {
		flat := true
		for _, r := range rewards[i : i+cfg.G] {
			if r != rewards[i] {
				flat = false
			}
		}
		if flat {
			st.FlatGroups++
		}
	}
	st.FlatGroups /= float64(len(examples))
	st.MeanLength /= N
	st.Truncated /= N
	return samples, st, nil
}
