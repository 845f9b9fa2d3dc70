package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/internal/defaultmodel"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
)

// useTempCache points os.UserCacheDir (and so the default model's directory)
// at a fresh temporary directory and makes sure no $DSV32_MODEL overrides it.
func useTempCache(t *testing.T) string {
	t.Helper()
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("DSV32_MODEL", "")
	os.Unsetenv("DSV32_MODEL")
	return cache
}

// TestDefaultModelLoads: the embedded files are written once into the cache,
// under their hash, and load as a model and a tokenizer that agree.
func TestDefaultModelLoads(t *testing.T) {
	cache := useTempCache(t)
	dir, err := defaultModel()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "dsv32", "default-"+defaultmodel.Hash(), defaultmodel.Name); dir != want {
		t.Errorf("default model in %s, want %s", dir, want)
	}
	m, err := model.Load(dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.ModelType != "deepseek_v32" || m.Config.IndexTopK <= 0 || m.Config.NumRoutedExperts <= 0 {
		t.Errorf("default model is not DeepSeek-V3.2's architecture: %+v", m.Config)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != m.Config.VocabSize {
		t.Errorf("tokenizer has %d ids, config %d", tok.VocabSize(), m.Config.VocabSize)
	}
	var total int64
	for _, name := range defaultmodel.Files {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	if total > 10<<20 {
		t.Errorf("embedded model is %d bytes, want < 10 MiB", total)
	}

	// A second call finds the directory complete and rewrites nothing.
	before, _ := os.Stat(filepath.Join(dir, "model.safetensors"))
	again, err := defaultModel()
	if err != nil || again != dir {
		t.Fatalf("second call: %q, %v", again, err)
	}
	after, _ := os.Stat(filepath.Join(dir, "model.safetensors"))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("second call rewrote the model")
	}
	if tmps, _ := filepath.Glob(filepath.Join(cache, "dsv32", ".tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary directories left behind: %v", tmps)
	}
}

// TestRunDefaultModel: `dsv32 run` with no --model answers with the embedded
// model.
func TestRunDefaultModel(t *testing.T) {
	useTempCache(t)
	out, err := captureStdout(t, func() error {
		return runCLI(t, "run", "--temperature", "0", "--max-tokens", "24", "Hello")
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) == "" {
		t.Fatal("run printed nothing")
	}
	t.Logf("run \"Hello\" → %q", out)
}

// TestDeviceLoopWhereItCan: --chain-loop (the default) makes chains device
// loops only where they can run: XLA, or a backend that says it loops, with
// --select digits.
func TestDeviceLoopWhereItCan(t *testing.T) {
	goBackend, err := backendFlag{Backend: "go"}.open()
	if err != nil {
		t.Fatal(err)
	}
	loops := testutil.Backend(t) // the Go backend dressed to run loops
	for _, c := range []struct {
		name    string
		asked   bool
		backend compute.Backend
		sel     string
		want    bool
	}{
		{"go backend", true, goBackend, "digits", false},
		{"looping backend", true, loops, "digits", true},
		{"looping backend, sort", true, loops, "sort", false},
		{"--no-chain-loop", false, loops, "digits", false},
	} {
		if got := deviceLoop(c.asked, c.backend, c.sel); got != c.want {
			t.Errorf("%s: device loop %v, want %v", c.name, got, c.want)
		}
	}
}
