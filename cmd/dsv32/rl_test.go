package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/env"
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
		// Line 0 is the starting accuracy alone; then one line per step.
		if !strings.Contains(sc.Text(), `"held_out_accuracy"`) || (lines > 0) != strings.Contains(sc.Text(), `"RatioMean"`) ||
			!strings.Contains(sc.Text(), fmt.Sprintf(`"step":%d`, lines)) {
			t.Errorf("metrics line %d lacks fields: %s", lines, sc.Text())
		}
		lines++
	}
	if lines != 3 {
		t.Errorf("%d metrics lines, want 3", lines)
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
	// --steps 0 only evaluates: eval.json holds a held-out accuracy.
	evalOut := filepath.Join(dir, "eval")
	if err := runCLI(t, "rl", "--model", pol, "--task", "reverse:min=3,max=5", "--out", evalOut, "--steps", "0",
		"--max-tokens", "6", "--raw", "--eval-n", "4"); err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Accuracy *float64
		N        int
	}
	if b, err := os.ReadFile(filepath.Join(evalOut, "eval.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Accuracy == nil || *ev.Accuracy < 0 || *ev.Accuracy > 1 || ev.N != 4 {
		t.Errorf("eval.json: accuracy %v over %d problems", ev.Accuracy, ev.N)
	}
	if m, _ := filepath.Glob(filepath.Join(evalOut, "step-*")); len(m) != 0 || fileExists(filepath.Join(evalOut, "metrics.jsonl")) {
		t.Errorf("--steps 0 trained: %v", m)
	}
	if err := runCLI(t, "rl", "--model", pol, "--task", "nonsense", "--out", out); err == nil {
		t.Error("an unknown task was accepted")
	}
}

// TestDataLadder writes SFT conversations from the ladder: each is a user
// prompt and the reference answer, drawn from the asked split only.
func TestDataLadder(t *testing.T) {
	dir := t.TempDir()
	for _, split := range []string{"train", "test"} {
		out := filepath.Join(dir, split+".jsonl")
		if err := runCLI(t, "data", "ladder", "--task", "reverse:min=3,max=6", "--n", "50", "--split", split, "--out", out); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 50 {
			t.Fatalf("%s: %d lines, want 50", split, len(lines))
		}
		for _, l := range lines {
			var conv struct {
				Messages []struct{ Role, Content string }
			}
			if err := json.Unmarshal([]byte(l), &conv); err != nil {
				t.Fatal(err)
			}
			if len(conv.Messages) != 2 || conv.Messages[0].Role != "user" || conv.Messages[1].Role != "assistant" {
				t.Fatalf("conversation %s", l)
			}
			s, ok := strings.CutPrefix(conv.Messages[0].Content, "reverse ")
			r := []rune(s)
			slices.Reverse(r)
			if !ok || string(r) != conv.Messages[1].Content {
				t.Fatalf("answer of %q is %q", conv.Messages[0].Content, conv.Messages[1].Content)
			}
			// Reverse's canonical key is its input string.
			if got := env.SplitOf("reverse:" + s); split == "test" && got != env.Test || split == "train" && got != env.Train {
				t.Errorf("%q is in split %v, asked for %s", s, got, split)
			}
		}
	}
	if err := runCLI(t, "data", "ladder", "--task", "reverse:min=9,max=3", "--out", filepath.Join(dir, "x.jsonl")); err == nil {
		t.Error("bad knobs were accepted")
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
