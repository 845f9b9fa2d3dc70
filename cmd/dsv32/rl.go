package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/env"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/rl"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train"
	"github.com/dsv32/dsv32/train/data"
	"github.com/gomlx/compute/dtypes"
)

// rlCmd runs GRPO with DeepSeek-V3.2's stabilisers on a task of the ladder.
type rlCmd struct {
	backendFlag
	Model       string  `required:"" type:"path" help:"Policy checkpoint: config.json, model.safetensors, tokenizer.json."`
	Task        string  `required:"" help:"Task of the ladder with knobs, e.g. reverse:min=4,max=12 or countdown (docs/tasks.md)."`
	Out         string  `required:"" type:"path" help:"Run directory: metrics.jsonl, charts, the final checkpoint."`
	Steps       int     `default:"100" help:"GRPO steps (rollout + update)."`
	Prompts     int     `default:"32" help:"Prompts per step."`
	Group       int     `default:"8" help:"Responses per prompt (G)."`
	MiniBatches int     `default:"2" help:"Optimizer steps per rollout batch (μ)."`
	LR          float64 `default:"1e-4" help:"Learning rate (constant after warm-up)."`
	Warmup      int     `default:"10" help:"Warm-up steps."`
	Clip        float64 `default:"1" help:"Gradient-norm clip."`
	Temperature float64 `default:"1" help:"Sampling temperature."`
	TopP        float64 `default:"0.95" help:"Sampling top-p."`
	TopK        int     `default:"0" help:"Sampling top-k (0: off)."`
	MaxTokens   int     `default:"64" help:"Tokens per response."`
	Raw         bool    `help:"Prompt with the task text alone (no chat format), for tiny ladder models."`
	Thinking    bool    `help:"Open <think> in the prompt."`
	Eps         float64 `default:"0.2" help:"Clip ε of the token ratio."`
	Beta        float64 `default:"0" help:"KL weight against the frozen initial policy (0 for verifier tasks, rl.md §12)."`
	PlainKL     bool    `name:"plain-kl" help:"Plain k3 instead of V3.2's unbiased ρ·k3 (an ablation)."`
	Delta       float64 `default:"0.5" help:"OPSM threshold δ."`
	NoOPSM      bool    `name:"no-opsm" help:"Turn off off-policy sequence masking."`
	NoReplay    bool    `name:"no-keep-routing" help:"Turn off routing replay (the trainer routes freely)."`
	NoKeepMask  bool    `name:"no-keep-mask" help:"Turn off the sampling mask (π_θ over the full vocabulary)."`
	AdvStd      bool    `help:"Divide advantages by the group's std."`
	TokenMean   bool    `help:"Aggregate the loss as token-mean instead of seq-mean-token-mean."`
	EvalEvery   int     `default:"10" help:"Steps between held-out evaluations."`
	EvalN       int     `default:"64" help:"Held-out problems per evaluation."`
	Seed        uint64  `default:"1" help:"Seed of prompts and sampling."`
}

func (c *rlCmd) Run() error {
	if c.Beta < 0 {
		return fmt.Errorf("--beta %g: must not be negative", c.Beta)
	}
	task, err := env.Lookup(c.Task)
	if err != nil {
		return err
	}
	backend, err := c.open()
	if err != nil {
		return err
	}
	m, err := model.Load(c.Model, dtypes.Float32)
	if err != nil {
		return err
	}
	tok, err := tokenizer.Load(filepath.Join(c.Model, "tokenizer.json"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return err
	}
	tc := train.DefaultConfig(train.SFT)
	tc.Steps, tc.LR, tc.MinLR, tc.Warmup, tc.Decay, tc.Clip, tc.Seed = c.Steps*c.MiniBatches, c.LR, c.LR, c.Warmup, 0, c.Clip, c.Seed
	tc.Native = native(backend)
	tr, err := train.New(backend, m, tc)
	if err != nil {
		return err
	}
	defer tr.Finalize()
	loss := rl.LossConfig{Eps: c.Eps, Beta: c.Beta, UnbiasedKL: !c.PlainKL, OPSM: !c.NoOPSM, Delta: c.Delta, TokenMean: c.TokenMean}
	upd, err := rl.NewUpdater(backend, tr, loss, c.Temperature)
	if err != nil {
		return err
	}
	upd.Replay, upd.KeepMask = !c.NoReplay, !c.NoKeepMask
	eng, err := engine.New(m, backend, engine.Config{MaxBatch: min(64, c.Prompts*c.Group), NativeTopK: native(backend)})
	if err != nil {
		return err
	}
	defer eng.Close()
	var stop []int32
	if id, ok := tok.TokenToID("<｜end▁of▁sentence｜>"); ok {
		stop = append(stop, int32(id))
	}
	metrics, err := os.Create(filepath.Join(c.Out, "metrics.jsonl"))
	if err != nil {
		return err
	}
	defer metrics.Close()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	cfg := rl.Config{Steps: c.Steps, PromptsPerStep: c.Prompts, MiniBatches: c.MiniBatches, Task: task, Seed: c.Seed,
		EvalEvery: c.EvalEvery, EvalN: c.EvalN, Metrics: metrics,
		Rollout: rl.RolloutConfig{G: c.Group, Raw: c.Raw, Thinking: c.Thinking, StdAdv: c.AdvStd, Reward: env.DefaultReward(c.MaxTokens),
			Params: engine.SampleParams{Temperature: c.Temperature, TopP: c.TopP, TopK: c.TopK, MaxTokens: c.MaxTokens, StopTokens: stop}}}
	if acc, err := rl.Evaluate(ctx, eng, tok, task, cfg.Rollout, c.Seed, c.EvalN); err == nil {
		slog.Info("held-out accuracy before RL", "task", c.Task, "accuracy", acc)
	}
	steps, err := rl.Run(ctx, eng, upd, tok, cfg)
	for _, s := range steps {
		line := fmt.Sprintf("step %d: reward %.3f ± %.3f, length %.1f, clip %.3f/%.3f, masked %.3f, ρ %.4f", s.Step, s.Reward, s.RewardStd,
			s.Length, s.ClipLow, s.ClipHigh, s.Masked, s.RatioMean)
		if s.HeldOut != nil {
			line += fmt.Sprintf(", held-out %.3f", *s.HeldOut)
		}
		slog.Debug(line)
	}
	if len(steps) > 0 {
		if perr := rl.Plot(c.Out, steps); perr != nil {
			slog.Warn("charts", "err", perr)
		}
		last := steps[len(steps)-1]
		if last.HeldOut != nil {
			slog.Info("held-out accuracy after RL", "task", c.Task, "accuracy", *last.HeldOut, "steps", len(steps))
		}
	}
	if err != nil {
		return err
	}
	dir, err := tr.Save(c.Out, data.State{})
	if err != nil {
		return err
	}
	if err := copyFile(filepath.Join(c.Model, "tokenizer.json"), filepath.Join(dir, "tokenizer.json")); err != nil {
		return err
	}
	slog.Info("saved the policy", "dir", dir)
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, to)
}
