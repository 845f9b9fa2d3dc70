package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"

	"github.com/gomlx/compute/dtypes"

	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train"
	"github.com/dsv32/dsv32/train/data"
)

// trainCmd is `dsv32 train`: one stage of the training pipeline (package
// train; docs/training.md).
type trainCmd struct {
	Stage string `required:"" enum:"pretrain,dsa-warmup,dsa-sparse,sft" placeholder:"STAGE" help:"pretrain | dsa-warmup (DSA stage 1) | dsa-sparse (DSA stage 2) | sft."`

	Model  string `type:"existingdir" placeholder:"DIR" help:"Start from this checkpoint (config.json + safetensors)."`
	Config string `type:"existingfile" placeholder:"FILE" help:"Start from random weights of this config.json."`
	Resume string `type:"existingdir" placeholder:"DIR" help:"Continue a run bit-exactly: a checkpoint, or a run's --out (its newest checkpoint). Its saved training config continues; the schedule flags are ignored."`

	Data      string  `type:"existingdir" placeholder:"DIR" help:"Token shards (dsv32 data tokenize) for pretrain and the DSA stages."`
	SFT       string  `name:"sft" type:"existingfile" placeholder:"FILE.jsonl" help:"Conversations for sft: JSONL, one {\"messages\": [...], \"tools\": [...]} per line (OpenAI format)."`
	Tokenizer string  `type:"existingfile" placeholder:"FILE" env:"DSV32_TOKENIZER" help:"tokenizer.json: encodes --sft, and is copied into every checkpoint."`
	Pack      string  `enum:"boundaries,concat" default:"boundaries" help:"How --data documents fill rows: boundaries (one attention segment each) or concat."`
	HeldOut   float64 `default:"0.01" placeholder:"FRAC" help:"Fraction of documents (or conversations) held out for evaluation, by hash."`
	EvalRows  int     `default:"16" placeholder:"N" help:"Held-out rows evaluated each time."`

	Out       string  `required:"" type:"path" placeholder:"DIR" help:"Run directory: checkpoints step-N/, metrics.jsonl, loss.png."`
	Steps     int     `default:"1000" placeholder:"N" help:"Optimizer steps of the run."`
	Batch     int     `default:"8" placeholder:"B" help:"Rows per micro-batch."`
	SeqLen    int     `default:"512" placeholder:"T" help:"Tokens per row."`
	Accum     int     `default:"1" placeholder:"N" help:"Micro-batches per optimizer step."`
	LR        float64 `name:"lr" default:"0" placeholder:"X" help:"Peak learning rate (0: the stage's default: 3e-4; 1e-3 for dsa-warmup; 1e-4 for sft)."`
	MinLR     float64 `name:"min-lr" default:"-1" placeholder:"X" help:"Final learning rate of the cosine (-1: lr/10)."`
	Warmup    int     `default:"100" placeholder:"N" help:"Linear warm-up steps."`
	Clip      float64 `default:"1" placeholder:"X" help:"Global gradient-norm clip (0: none)."`
	Decay     float64 `default:"-1" placeholder:"X" help:"AdamW weight decay on matrices (-1: the stage's default)."`
	Alpha     float64 `default:"-1" placeholder:"X" help:"Sequence-wise balance loss weight (-1: the stage's default, 1e-4 or 0)."`
	Gamma     float64 `default:"-1" placeholder:"X" help:"Expert-bias balancing step (-1: the stage's default, 1e-3 or 0)."`
	EvalEvery int     `default:"100" placeholder:"N" help:"Steps between evaluations."`
	SaveEvery int     `default:"500" placeholder:"N" help:"Steps between checkpoints (one is always written at the end)."`
	Keep      int     `default:"3" placeholder:"K" help:"Checkpoints kept (0: all)."`
	Seed      uint64  `default:"1" help:"Seed of the data order (and of --config's random weights)."`
	InitStd   float64 `default:"0.02" placeholder:"X" help:"Standard deviation of --config's random weights."`
	DType     string  `name:"dtype" enum:"f32,bf16" default:"f32" help:"Compute dtype (weights stay float32 masters): f32 or bf16 (GPU)."`
	NoBar     bool    `help:"No progress bar."`
	backendFlag
}

func (c *trainCmd) Run() error {
	stage, err := train.ParseStage(c.Stage)
	if err != nil {
		return err
	}
	starts := 0
	for _, s := range []string{c.Model, c.Config, c.Resume} {
		if s != "" {
			starts++
		}
	}
	if starts != 1 {
		return errors.New("train: give exactly one of --model DIR, --config FILE or --resume DIR")
	}
	if (c.Data == "") == (c.SFT == "") {
		return errors.New("train: give exactly one of --data DIR (token shards) or --sft FILE.jsonl")
	}
	if (c.SFT != "") != (stage == train.SFT) {
		return fmt.Errorf("train: --sft FILE.jsonl goes with --stage sft (its loss falls on assistant tokens only), --data DIR with the other stages")
	}
	if c.SFT != "" && c.Tokenizer == "" {
		return errors.New("train: --sft needs --tokenizer FILE")
	}
	cfg := train.DefaultConfig(stage)
	cfg.Steps, cfg.Batch, cfg.SeqLen, cfg.Accum = c.Steps, c.Batch, c.SeqLen, c.Accum
	if c.LR > 0 {
		cfg.LR, cfg.MinLR = c.LR, c.LR/10
	}
	if c.MinLR >= 0 {
		cfg.MinLR = c.MinLR
	}
	for _, f := range []struct {
		flag float64
		dst  *float64
	}{{c.Decay, &cfg.Decay}, {c.Alpha, &cfg.Alpha}, {c.Gamma, &cfg.Gamma}} {
		if f.flag >= 0 {
			*f.dst = f.flag
		}
	}
	cfg.Warmup, cfg.Clip, cfg.EvalEvery, cfg.SaveEvery, cfg.KeepLast = c.Warmup, c.Clip, c.EvalEvery, c.SaveEvery, c.Keep
	cfg.Seed, cfg.DType = c.Seed, c.DType
	if err := cfg.Validate(); err != nil {
		return err
	}

	backend, err := c.backendFlag.open()
	if err != nil {
		return err
	}
	cfg.Native = native(backend)

	run := &train.Run{Backend: backend, Config: cfg, Out: c.Out, Resume: c.Resume}
	var mcfg *model.Config
	switch {
	case c.Resume != "":
		dir, err := train.Latest(c.Resume)
		if err != nil {
			return err
		}
		st, err := train.ReadState(dir)
		if err != nil {
			return err
		}
		if st.Config.Stage != stage {
			return fmt.Errorf("train: %s is a %s checkpoint, not %s", dir, st.Config.Stage, stage)
		}
		cfg = st.Config
		// The data must be rebuilt as it was: the saved split and packing win.
		if v, ok := st.Meta["held_out"]; ok {
			if c.HeldOut, err = strconv.ParseFloat(v, 64); err != nil {
				return fmt.Errorf("train: %s: meta held_out %q: %w", dir, v, err)
			}
		}
		if v, ok := st.Meta["pack"]; ok {
			c.Pack = v
		}
		for _, k := range [][2]string{{"data", c.Data}, {"sft", c.SFT}} {
			if v := st.Meta[k[0]]; v != "" && v != k[1] {
				slog.Warn("resuming on other data than the run started with: the data position may not match", "saved", v, "given", k[1])
			}
		}
		if mcfg, err = model.LoadConfig(dir); err != nil {
			return err
		}
		slog.Info("resuming", "checkpoint", dir, "step", st.Step, "steps", cfg.Steps)
	case c.Model != "":
		if run.Model, err = model.Load(c.Model, dtypes.Float32); err != nil {
			return err
		}
		mcfg = run.Model.Config
	default:
		if mcfg, err = model.LoadConfig(c.Config); err != nil {
			return err
		}
		if run.Model, err = model.NewRandom(mcfg, c.InitStd, c.Seed, dtypes.Float32); err != nil {
			return err
		}
	}

	// Data: training rows and held-out rows.
	var pad int32
	if c.SFT != "" {
		tok, err := tokenizer.Load(c.Tokenizer)
		if err != nil {
			return err
		}
		if tok.VocabSize() > mcfg.VocabSize {
			return fmt.Errorf("train: the tokenizer has %d ids, the model's vocabulary %d", tok.VocabSize(), mcfg.VocabSize)
		}
		convs, err := train.ReadConversations(c.SFT)
		if err != nil {
			return err
		}
		exs, err := train.TokenizeAll(convs, tok)
		if err != nil {
			return fmt.Errorf("%w (in %s)", err, c.SFT)
		}
		if id, ok := tok.TokenToID("<｜▁pad▁｜>"); ok {
			pad = int32(id)
		}
		long := 0
		for _, ex := range exs {
			if len(ex.Tokens) > cfg.SeqLen+1 {
				long++
			}
		}
		if long > 0 {
			slog.Warn("conversations longer than a row are truncated (their tail is not trained)", "conversations", long, "seq_len", cfg.SeqLen)
		}
		var trainEx, evalEx []train.Example
		for _, ex := range exs {
			if data.HeldOut(uint32s(ex.Tokens), c.HeldOut) {
				evalEx = append(evalEx, ex)
			} else {
				trainEx = append(trainEx, ex)
			}
		}
		if run.Data, err = train.NewSFTPacker(trainEx, cfg.SeqLen, true, cfg.Seed, pad); err != nil {
			return err
		}
		if len(evalEx) > 0 {
			ep, err := train.NewSFTPacker(evalEx, cfg.SeqLen, false, 0, pad)
			if err != nil {
				return err
			}
			run.Eval = heldOutRows(ep, c.EvalRows)
		}
		slog.Info("sft data", "conversations", len(exs), "train", len(trainEx), "held_out", len(evalEx))
	} else {
		ds, err := data.Open(c.Data)
		if err != nil {
			return err
		}
		defer ds.Close()
		if v := ds.Index.Tokenizer.VocabSize; v > mcfg.VocabSize {
			return fmt.Errorf("train: %s was tokenised with %d ids, the model's vocabulary is %d", c.Data, v, mcfg.VocabSize)
		}
		trainC, heldC, err := data.Split(ds, c.HeldOut)
		if err != nil {
			return err
		}
		mode := data.Boundaries
		if c.Pack == "concat" {
			mode = data.Concat
		}
		pad = int32(ds.Index.EOS)
		p, err := data.NewPacker(trainC, data.PackConfig{SeqLen: cfg.SeqLen, Mode: mode, Shuffle: true, Seed: cfg.Seed, Pad: pad})
		if err != nil {
			return err
		}
		run.Data = p
		if heldC.NumDocs() > 0 {
			ep, err := data.NewPacker(heldC, data.PackConfig{SeqLen: cfg.SeqLen, Mode: mode, Pad: pad})
			if err != nil {
				return err
			}
			run.Eval = heldOutRows(ep, c.EvalRows)
		}
		slog.Info("data", "documents", ds.NumDocs(), "tokens", ds.NumTokens(), "held_out_documents", heldC.NumDocs())
	}
	if c.Tokenizer != "" {
		run.Files = []string{c.Tokenizer}
		if filepath.Base(c.Tokenizer) != "tokenizer.json" {
			slog.Warn("the tokenizer is copied into checkpoints under its own name; servers look for tokenizer.json", "file", c.Tokenizer)
		}
	}
	run.Meta = map[string]string{"held_out": strconv.FormatFloat(c.HeldOut, 'g', -1, 64), "pack": c.Pack, "data": c.Data, "sft": c.SFT}
	if !c.NoBar {
		run.Progress = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := run.Do(ctx)
	if res != nil && res.Checkpoint != "" {
		slog.Info("checkpoint", "dir", res.Checkpoint)
	}
	if err != nil {
		return err
	}
	last := res.Last
	if last.Step == 0 {
		slog.Info("nothing to do: the run is complete", "steps", res.Trainer.StepsDone())
		return nil
	}
	args := []any{"step", last.Step, "loss", fmt.Sprintf("%.4f", last.Loss), "lm_loss", fmt.Sprintf("%.4f", last.LMLoss)}
	if res.Eval != nil {
		args = append(args, "eval_loss", fmt.Sprintf("%.4f", res.Eval.Loss))
	}
	slog.Info("done", args...)
	return nil
}

// heldOutRows takes up to n rows of one pass over an evaluation packer.
func heldOutRows(p train.Source, n int) []data.Row {
	var rows []data.Row
	for range n {
		rows = append(rows, p.Next())
		if st := p.State(); st.Epoch > 0 {
			break
		}
	}
	return rows
}

func uint32s(ids []int32) []uint32 {
	out := make([]uint32, len(ids))
	for i, id := range ids {
		out[i] = uint32(id)
	}
	return out
}
