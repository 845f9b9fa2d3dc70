package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/checkpoint"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// captureStdout runs f and returns what it printed.
func captureStdout(t *testing.T, f func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() {
		var buf strings.Builder
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			buf.Write(b[:n])
			if err != nil {
				break
			}
		}
		done <- []byte(buf.String())
	}()
	ferr := f()
	w.Close()
	os.Stdout = old
	return string(<-done), ferr
}

func TestInfoReportsDeepSeekV32(t *testing.T) {
	out, err := captureStdout(t, func() error { return runCLI(t, "info", testutil.Testdata("deepseek-v3.2-config.json")) })
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"671.9B", "683.5B", "38.4B", "37.5B", "85888 in total", "1408 per layer", "DSA"} {
		if !strings.Contains(out, want) {
			t.Errorf("info output lacks %q:\n%s", want, out)
		}
	}
	if err := runCLI(t, "info", filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("info accepted a missing file")
	}
}

// TestLogitsCommand writes logits and top-k for the fixture's tokens and
// compares them with transformers' reference.
func TestLogitsCommand(t *testing.T) {
	exp, err := checkpoint.Open(testutil.Testdata("tiny-dsa", "expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Close()
	ids, _, err := exp.Int64("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]string, len(ids))
	for i, v := range ids {
		parts[i] = fmt.Sprint(v)
	}
	out := filepath.Join(t.TempDir(), "logits.safetensors")
	if err := runCLI(t, "logits", "--model", testutil.Testdata("tiny-dsa"), "--ids", strings.Join(parts, ","), "--out", out); err != nil {
		t.Fatal(err)
	}
	got, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	gl, shape, err := got.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := exp.Float32("logits")
	if rel, _ := testutil.RelErr(gl, want); rel > 1e-4 || shape[0] != len(ids) || shape[1] != 320 {
		t.Errorf("logits %v: relative error %.3g", shape, rel)
	}
	for l := range 3 {
		top, shape, err := got.Int64(fmt.Sprintf("topk_%d", l))
		if err != nil || shape[0] != len(ids) || shape[1] != 16 || len(top) != len(ids)*16 {
			t.Errorf("topk_%d: %v %v", l, shape, err)
		}
	}
	if err := runCLI(t, "logits", "--model", testutil.Testdata("tiny-dsa"), "--ids", "1,x", "--out", out); err == nil || !strings.Contains(err.Error(), "--ids") {
		t.Errorf("bad --ids: %v", err)
	}
	if err := runCLI(t, "logits", "--model", testutil.Testdata("tiny-dsa"), "--ids", "1,999", "--out", out); err == nil {
		t.Error("a token outside the vocabulary was accepted")
	}
}

// The benchmark presets parse, and the derived 1b really has 8 experts.
func TestBenchPresets(t *testing.T) {
	want := map[string]int64{"3b": 2_989_098_336, "1b": 1_327_613_016}
	for name, src := range presets {
		cfg, err := model.ParseConfig([]byte(src))
		if err != nil {
			t.Fatalf("preset %s: %v", name, err)
		}
		if n, ok := want[name]; ok && cfg.Count().Total != n {
			t.Errorf("preset %s: %d parameters, want %d", name, cfg.Count().Total, n)
		}
	}
}

func TestXLAFlagsCUDAGraphs(t *testing.T) {
	for _, c := range []struct {
		flags  string
		graphs bool
		want   string
	}{
		{"", false, "--xla_gpu_enable_command_buffer="},
		{"--xla_dump_to=/tmp/h", false, "--xla_dump_to=/tmp/h --xla_gpu_enable_command_buffer="},
		{"", true, ""},
		{"--xla_dump_to=/tmp/h", true, "--xla_dump_to=/tmp/h"},
		{"--xla_gpu_enable_command_buffer=FUSION", false, "--xla_gpu_enable_command_buffer=FUSION"}, // the user chose
	} {
		if got := xlaFlags(c.flags, c.graphs); got != c.want {
			t.Errorf("xlaFlags(%q, %v) = %q, want %q", c.flags, c.graphs, got, c.want)
		}
	}
}
