package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/defaultmodel"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/server"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/gomlx/compute/dtypes"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// defaultModel is the model directory used when --model is not given: the
// small model embedded in the binary (internal/defaultmodel, card in
// docs/default-model.md), written once into the user's cache directory.
func defaultModel() (string, error) {
	dir, err := defaultmodel.Dir()
	if err != nil {
		return "", err
	}
	slog.Debug("no --model: using the embedded default model", "dir", dir)
	return dir, nil
}

// modelFlags are the flags of the commands that run a model (run, chat,
// serve), and load is how they all load it.
type modelFlags struct {
	backendFlag
	Model        string `placeholder:"DIR" env:"DSV32_MODEL" help:"Model directory: config.json, model.safetensors (or shards) and tokenizer.json (default: the small model embedded in the binary, docs/default-model.md)."`
	MaxBatch     int    `default:"8" placeholder:"N" help:"Sequences decoded together."`
	MaxContext   int    `placeholder:"N" help:"Longest prompt + completion in tokens (default: the model's, at most 32768)."`
	MemoryBudget int64  `placeholder:"BYTES" help:"Bytes the caches may take (default 4 GiB); requests that cannot fit are refused."`
	DType        string `name:"dtype" default:"f32" enum:"f32,bf16" help:"Weight and activation dtype: f32, or bf16 (half the memory; the choice for GPUs)."`
	Select       string `default:"digits" enum:"sort,digits" help:"On XLA, how decode steps pick the indexer's keys and chains cut top-k/top-p: digits (radix select over 8-bit digits, model.Options.DigitTopK, which device loops need; docs/engine.md) or sort (the backend's TopK)."`
	PrefixReuse  int    `name:"prefix-reuse" default:"16" placeholder:"N" help:"Take a prompt's first tokens from another request's cache when at least N are shared (a conversation's earlier turns, a common system prompt); -1 never."`
	PrefixStore  int64  `name:"prefix-store" placeholder:"BYTES" help:"Host memory that keeps cache prefixes after their rows go to other requests, for --prefix-reuse to find (default 1 GiB; -1 none)."`
	ChainLoop    bool   `name:"chain-loop" default:"true" negatable:"" help:"Run each chain of decode steps as one program, a loop on the device (model.Options.DeviceLoop), where the backend can: XLA with --select digits. Each loop compiles in the background while chains step from the host."`
}

// loadedModel is a loaded model, ready to generate.
type loadedModel struct {
	dir string
	eng *engine.Engine
	tok *tokenizer.BPE
}

func (rt *loadedModel) Close() { rt.eng.Close() }

// load opens the backend, the weights and the tokenizer, starts the engine
// and warms it up, with a progress bar on a terminal (log lines otherwise).
func (f *modelFlags) load() (*loadedModel, error) {
	dir := f.Model
	if dir == "" {
		var err error
		if dir, err = defaultModel(); err != nil {
			return nil, fmt.Errorf("no --model, and the embedded default model: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	steps := []string{"backend", "weights", "tokenizer", "engine", "warm-up"}
	var bar *progressbar.ProgressBar
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions(len(steps), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("loading "+filepath.Base(dir)), progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(false))
	}
	step := func(i int) {
		if bar != nil {
			bar.Describe(fmt.Sprintf("loading %s: %s", filepath.Base(dir), steps[i]))
			bar.Set(i)
		} else {
			slog.Debug("loading", "model", dir, "step", steps[i])
		}
	}
	start := time.Now()
	step(0)
	backend, err := f.open()
	if err != nil {
		return nil, err
	}
	step(1)
	dt := dtypes.Float32
	if f.DType == "bf16" {
		dt = dtypes.BFloat16
	}
	m, err := model.Load(dir, dt)
	if err != nil {
		return nil, err
	}
	step(2)
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	if tok.VocabSize() > m.Config.VocabSize {
		return nil, fmt.Errorf("model %s: tokenizer.json has %d ids, config.json's vocab_size is %d", dir, tok.VocabSize(), m.Config.VocabSize)
	}
	step(3)
	eng, err := engine.New(m, backend, engine.Config{MaxBatch: f.MaxBatch, MaxContext: f.MaxContext, MemoryBudget: f.MemoryBudget,
		NativeTopK: native(backend), DigitTopK: f.Select == "digits", DeviceLoop: deviceLoop(f.ChainLoop, backend, f.Select), PrefixReuse: f.PrefixReuse, PrefixStore: f.PrefixStore})
	if err != nil {
		return nil, err
	}
	step(4)
	// One token from BOS compiles the prefill and decode graphs before the
	// first request needs them.
	if bos, ok := tok.TokenToID(chat.BOS); ok {
		if _, err := eng.Generate(context.Background(), engine.Request{Prompt: []int32{int32(bos)}, Params: engine.SampleParams{MaxTokens: 2}}, nil); err != nil {
			eng.Close()
			return nil, fmt.Errorf("model %s: warm-up: %w", dir, err)
		}
	}
	if bar != nil {
		bar.Finish()
	}
	slog.Info("model loaded", "model", dir, "layers", m.Config.NumHiddenLayers, "vocab", m.Config.VocabSize,
		"context", eng.Config().MaxContext, "took", time.Since(start).Round(time.Millisecond))
	return &loadedModel{dir: dir, eng: eng, tok: tok}, nil
}

// localServer loads the model and wraps it in an in-process server, the
// request path run and chat share with dsv32 serve; closeAll releases both.
func (f *modelFlags) localServer() (srv *server.Server, closeAll func(), err error) {
	rt, err := f.load()
	if err != nil {
		return nil, nil, err
	}
	srv, err = server.New(rt.eng, rt.tok, server.Config{ModelName: localModel})
	if err != nil {
		rt.Close()
		return nil, nil, err
	}
	return srv, func() { srv.Close(); rt.Close() }, nil
}
