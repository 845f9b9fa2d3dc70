package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/env"
	"github.com/dsv32/dsv32/internal/atomicfile"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/rl"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train"
	"github.com/dsv32/dsv32/train/data"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
)

// rlCmd runs GRPO with DeepSeek-V3.2's stabilisers on a task of the ladder.
type rlCmd struct {
	backendFlag
	Model       string  `required:"" type:"path" help:"Policy checkpoint: config.json, model.safetensors, tokenizer.json."`
	Task        string  `required:"" help:"Task of the ladder with knobs, e.g. reverse:min=4,max=12 or countdown (docs/tasks.md)."`
	Out         string  `required:"" type:"path" help:"Run directory: metrics.jsonl, charts, the final checkpoint."`
	Steps       int     `default:"100" help:"GRPO steps (rollout + update); 0 only evaluates the model on the held-out split (OUT/eval.json)."`
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

	Judge            string        `help:"OpenAI-compatible endpoint of a judge model (e.g. http://127.0.0.1:8000/v1): adds a rubric reward (env.Rubric, docs/tasks.md); API key from $DSV32_JUDGE_API_KEY."`
	JudgeModel       string        `default:"deepseek-chat" help:"The judge's model name."`
	Rubric           string        `type:"existingfile" help:"Rubric for --judge: a JSON list of {name, description, weight}; an example's meta rubric overrides it."`
	JudgeWeight      float64       `default:"1" help:"Weight of the rubric reward in R."`
	JudgeTimeout     time.Duration `default:"60s" help:"Timeout of one judge call."`
	JudgeConcurrency int           `default:"8" help:"Judge calls in flight at most."`
}

func (c *rlCmd) Run() error {
	if c.Steps < 0 {
		return fmt.Errorf("--steps %d: must not be negative", c.Steps)
	}
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
	var stop []int32
	if id, ok := tok.TokenToID("<｜end▁of▁sentence｜>"); ok {
		stop = append(stop, int32(id))
	}
	rollout := rl.RolloutConfig{G: c.Group, Raw: c.Raw, Thinking: c.Thinking, StdAdv: c.AdvStd, Reward: env.DefaultReward(c.MaxTokens),
		Params: engine.SampleParams{Temperature: c.Temperature, TopP: c.TopP, TopK: c.TopK, MaxTokens: c.MaxTokens, StopTokens: stop}}
	if c.Judge != "" {
		var cs []env.Criterion
		if c.Rubric != "" {
			if cs, err = env.LoadCriteria(c.Rubric); err != nil {
				return err
			}
		}
		judge := &env.Rubric{Judge: &agent.HTTPClient{BaseURL: c.Judge, APIKey: os.Getenv("DSV32_JUDGE_API_KEY"), Retries: 2},
			Model: c.JudgeModel, Criteria: cs, Timeout: c.JudgeTimeout, Concurrency: c.JudgeConcurrency}
		rollout.Reward = append(env.DefaultReward(c.MaxTokens), env.Term{Reward: judge, Weight: c.JudgeWeight})
		defer func() { slog.Info("judge", "stats", judge.Stats()) }()
	}
	if c.Steps == 0 {
		return c.evaluate(backend, m, tok, task, rollout)
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
	metrics, err := os.Create(filepath.Join(c.Out, "metrics.jsonl"))
	if err != nil {
		return err
	}
	defer metrics.Close()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	cfg := rl.Config{Steps: c.Steps, PromptsPerStep: c.Prompts, MiniBatches: c.MiniBatches, Task: task, Seed: c.Seed,
		EvalEvery: c.EvalEvery, EvalN: c.EvalN, Metrics: metrics, Rollout: rollout}
	// Step 0 of metrics.jsonl is the starting point: held-out accuracy only.
	acc, err := rl.Evaluate(ctx, eng, tok, task, cfg.Rollout, c.Seed, c.EvalN)
	if err != nil {
		return err
	}
	slog.Info("held-out accuracy before RL", "task", c.Task, "accuracy", acc)
	if err := json.NewEncoder(metrics).Encode(map[string]any{"step": 0, "held_out_accuracy": acc}); err != nil {
		return err
	}
	steps, err := rl.Run(ctx, eng, upd, tok, cfg)
	for _, s := range steps {
		line := fmt.Sprintf("step %d: reward %.3f ± %.3f, length %.1f, clip %.3f/%.3f, masked %.3f, ρ %.4f, mask mismatch %.3f", s.Step, s.Reward, s.RewardStd,
			s.Length, s.ClipLow, s.ClipHigh, s.Masked, s.RatioMean, s.SamplingMaskMismatch)
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

// evaluate is --steps 0: greedy pass@1 on --eval-n held-out problems, logged
// and written to OUT/eval.json, with no training.
func (c *rlCmd) evaluate(backend compute.Backend, m *model.Model, tok *tokenizer.BPE, task env.Task, rollout rl.RolloutConfig) error {
	eng, err := engine.New(m, backend, engine.Config{MaxBatch: min(64, c.EvalN), NativeTopK: native(backend)})
	if err != nil {
		return err
	}
	defer eng.Close()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	acc, err := rl.Evaluate(ctx, eng, tok, task, rollout, c.Seed, c.EvalN)
	if err != nil {
		return err
	}
	slog.Info("held-out accuracy", "task", c.Task, "accuracy", acc, "n", c.EvalN)
	b, err := json.Marshal(map[string]any{"model": c.Model, "task": c.Task, "n": c.EvalN, "seed": c.Seed, "accuracy": acc})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.Out, "eval.json"), append(b, '\n'))
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
