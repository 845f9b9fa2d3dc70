package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // the pure-Go CPU backend
)

// The XLA backend is linked in by backend_xla.go, unless the binary is built
// with -tags noxla (quicker to build: no cgo; tests use it).

// backendFlag is embedded by every command that runs a model.
type backendFlag struct {
	Backend    string `help:"Compute backend: \"go\" (CPU, default) or \"xla:/abs/path/xla_cuda_plugin.so\". Defaults to $GOMLX_BACKEND, else go." env:"GOMLX_BACKEND"`
	CUDAGraphs bool   `name:"cuda-graphs" default:"true" negatable:"" env:"DSV32_CUDA_GRAPHS" help:"On XLA's CUDA backend, let XLA run programs as CUDA graphs (its command buffers); XLA_FLAGS that choose command buffers win (docs/engine.md)."`
}

// xlaFlags returns XLA_FLAGS with CUDA graphs switched off unless graphs is
// set or the flags already choose. Graphs are on by default: since the
// caches are integer words written in place, every decode path measured on
// the H200 is faster with them, and a device loop most (2.4× at batch 1,
// docs/engine.md, session 10).
func xlaFlags(flags string, graphs bool) string {
	if graphs || strings.Contains(flags, "xla_gpu_enable_command_buffer") {
		return flags
	}
	return strings.TrimSpace(flags + " --xla_gpu_enable_command_buffer=")
}

// open returns the configured backend. dsv32 never downloads anything: XLA
// is used only when a plugin path is given.
func (f backendFlag) open() (b compute.Backend, err error) {
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	cfg := f.Backend
	if cfg == "" || cfg == "go" {
		// Ops one after another, each using every core: GoMLX v0.28.2's Go
		// backend can deadlock running TopK sorts as parallel ops.
		cfg = "go:ops_sequential"
	}
	if strings.HasPrefix(cfg, "xla") && !strings.HasPrefix(cfg, "xla:") {
		return nil, fmt.Errorf("backend %q: give the PJRT plugin path, as xla:/abs/path/xla_cuda_plugin.so", cfg)
	}
	if strings.HasPrefix(cfg, "xla:") {
		os.Setenv("XLA_FLAGS", xlaFlags(os.Getenv("XLA_FLAGS"), f.CUDAGraphs))
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("backend %q: %v", cfg, r)
		}
	}()
	b, err = compute.NewWithConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", cfg, err)
	}
	return b, nil
}

// native reports whether the backend's own TopK op is the fast choice for the
// indexer (XLA); the Go backend uses radix select (see model.Options.NativeTopK).
func native(b compute.Backend) bool { return strings.HasPrefix(b.Name(), "xla") }
