package main

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/gomlx/compute/dtypes"
)

// TestRLCommand runs two GRPO steps on the tiny reference model with a
// tokenizer small enough for its vocabulary: metrics, charts and a policy
// checkpoint that loads.
func TestRLCommand(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy")
	m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(pol, "F32"); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("reverse 12345 -> 54321\ncopy 777 -> 777\n", 40)
	tok, err := tokenizer.Train(slices.Values([]string{text}), 290, tokenizer.TrainOptions{SpecialTokens: tokenizer.DeepSeekSpecialTokens()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Save(filepath.Join(pol, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	if err := runCLI(t, "rl", "--model", pol, "--task", "reverse:min=3,max=5", "--out", out, "--steps", "2", "--prompts", "2",
		"--group", "4", "--max-tokens", "6", "--raw", "--top-k", "32", "--eval-n", "4", "--eval-every", "1", "--lr", "1e-3"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if !strings.Contains(sc.Text(), `"held_out_accuracy"`) || !strings.Contains(sc.Text(), `"RatioMean"`) {
			t.Errorf("metrics line lacks fields: %s", sc.Text())
		}
		lines++
	}
	if lines != 2 {
		t.Errorf("%d metrics lines, want 2", lines)
	}
	for _, png := range []string{"reward.png", "stability.png", "length.png"} {
		if st, err := os.Stat(filepath.Join(out, png)); err != nil || st.Size() == 0 {
			t.Errorf("chart %s: %v", png, err)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(out, "step-*"))
	if len(matches) != 1 {
		t.Fatalf("checkpoints %v", matches)
	}
	if _, err := model.Load(matches[0], dtypes.Float32); err != nil {
		t.Errorf("the saved policy does not load: %v", err)
	}
	if err := runCLI(t, "rl", "--model", pol, "--task", "nonsense", "--out", out); err == nil {
		t.Error("an unknown task was accepted")
	}
}
