// Command dsv32 runs, serves, trains and inspects DeepSeek-V3.2 models.
//
// Each subcommand lives in its own file of this package, as a kong command
// struct with a Run method; the CLI struct below lists them in one place.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/alecthomas/kong"
)

// cli is the whole command line. Subcommands are verbs.
type cli struct {
	Verbose bool `short:"v" help:"Log debug messages."`

	Info   infoCmd   `cmd:"" help:"Summarise a model: architecture, parameter counts, cache bytes per token."`
	Logits logitsCmd `cmd:"" help:"Run one prefill and write logits and top-k selections to a safetensors file."`
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
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "dsv32:", err)
		os.Exit(1)
	}
}
