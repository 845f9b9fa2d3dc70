// Command dsv32 runs, serves, trains and inspects DeepSeek-V3.2 models.
//
// Each subcommand lives in its own file of this package, as a kong command
// struct with a Run method; the CLI struct below lists them in one place.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/alecthomas/kong"
)

// cli is the whole command line. Subcommands are verbs.
type cli struct {
	Verbose    bool   `short:"v" help:"Log debug messages."`
	CPUProfile string `name:"cpu-profile" type:"path" placeholder:"FILE" help:"Write a Go CPU profile of the command (go tool pprof)."`

	// Use a model.
	Run   runCmd   `cmd:"" help:"Generate one chat reply to a prompt (or a conversation file), streamed to the terminal."`
	Chat  chatCmd  `cmd:"" help:"Chat with a model in the terminal (one message per line; /reset, /exit)."`
	Serve serveCmd `cmd:"" help:"Serve a model over an OpenAI-compatible HTTP API (chat, completions, models, health, metrics)."`

	// Make one.
	Data      dataCmd      `cmd:"" help:"Training data: tokenise text into shards, generate synthetic tasks (long-context retrieval, stories, arithmetic), inspect a dataset."`
	Tokenizer tokenizerCmd `cmd:"" help:"Tokenizer tools: train a byte-level BPE."`
	Train     trainCmd     `cmd:"" help:"Train: pretrain, DSA stage 1 (dsa-warmup) and 2 (dsa-sparse), SFT on chat JSONL; checkpoints, metrics, --resume."`
	Eval      evalCmd      `cmd:"" help:"Held-out evaluation, dense or sparse: long-context retrieval accuracy, LM loss; the DSA experiment's summary."`
	RL        rlCmd        `cmd:"" name:"rl" help:"GRPO with DeepSeek-V3.2's stabilisers on a task of the ladder."`

	// Build agents on it.
	Agent agentCmd `cmd:"" help:"Run the agent (tools, context management) against an OpenAI-compatible endpoint, or replay a trajectory."`
	Index indexCmd `cmd:"" help:"Build the offline search index for the agent's search tool."`

	// Inspect and measure.
	Info     infoCmd     `cmd:"" help:"Summarise a model: architecture, parameter counts, cache bytes per token."`
	Tokenize tokenizeCmd `cmd:"" help:"Text to token ids (or --ids to text) with a tokenizer.json; --bench measures MB/s."`
	Render   renderCmd   `cmd:"" help:"Print the DeepSeek-V3.2 prompt for a JSON conversation (and its token ids with --tokenizer)."`
	Logits   logitsCmd   `cmd:"" help:"Run one prefill and write logits and top-k selections to a safetensors file."`
	Bench    benchCmd    `cmd:"" help:"Measure decode and prefill speed; sparse vs dense decode cost."`
	Plot     plotCmd     `cmd:"" help:"Chart one metric of several runs' metrics.jsonl in one PNG (a repeated label averages seeds)."`
}

func main() {
	var c cli
	ctx := kong.Parse(&c,
		kong.Name("dsv32"),
		kong.Description("DeepSeek-V3.2 in Go: run, serve, train and inspect sparse-attention MoE models."),
		kong.UsageOnError(),
	)
	level := slog.LevelInfo
	if c.Verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "dsv32: --cpu-profile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(ctx); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "dsv32:", err)
		os.Exit(1)
	}
}

func run(ctx *kong.Context) error { return ctx.Run() }
