package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train/data"
)

// TestScoreRetrieval checks the metrics on hand-made predictions: target t
// of a row is token t+1, so the answer ids[s:s+n] is predicted at s-1…s+n-2.
func TestScoreRetrieval(t *testing.T) {
	docs := []evalDoc{
		{ids: []int32{5, 6, 7, 8, 9, 1}, ansStart: 3, ansTokens: 2, depth: 0.05}, // answer 8 9
		{ids: []int32{5, 6, 7, 8, 9, 1}, ansStart: 3, ansTokens: 2, depth: 0.95},
		{ids: []int32{4, 3, 2, 1}, ansStart: 2, ansTokens: 1, depth: 0.5}, // answer 2
	}
	nll := [][]float32{{1, 1, 2, 0.5, 1.5, 9}, {1, 1, 2, 0.5, 1.5, 9}, {3, 1, 2, 9}} // [5] and [3]: padding
	argmax := [][]int32{
		{0, 0, 8, 9, 0, 0}, // both answer tokens right (positions 2, 3), the rest wrong
		{0, 0, 8, 0, 9, 0}, // second answer token wrong (9 sits one position late)
		{0, 2, 0, 0},       // right
	}
	r := evalScoreRetrieval(docs, nll, argmax, "m", false, 16)
	if r.N != 3 || r.Correct != 2 || math.Abs(r.Accuracy-2.0/3) > 1e-12 {
		t.Errorf("accuracy %d/%d = %v, want 2/3", r.Correct, r.N, r.Accuracy)
	}
	if want := 4.0 / 5; math.Abs(r.TokenAccuracy-want) > 1e-12 {
		t.Errorf("answer-token accuracy %v, want %v", r.TokenAccuracy, want)
	}
	if want := (2 + 0.5 + 2 + 0.5 + 1) / 5.0; math.Abs(r.AnswerLoss-want) > 1e-6 {
		t.Errorf("answer loss %v, want %v", r.AnswerLoss, want)
	}
	if want := (6.0 + 6.0 + 6.0) / 13; math.Abs(r.LMLoss-want) > 1e-6 { // 5 + 5 + 3 targets
		t.Errorf("lm loss %v, want %v", r.LMLoss, want)
	}
	if len(r.ByDepth) != 10 || *r.ByDepth[0] != 1 || *r.ByDepth[9] != 0 || *r.ByDepth[5] != 1 || r.ByDepth[3] != nil {
		t.Errorf("by depth %v", r.ByDepth)
	}
}

// TestEvalRetrievalGreedy builds documents whose answer is the tiny model's
// own greedy continuation of a prompt (so the answer is known to be right)
// or that continuation with one token changed (known wrong), and checks the
// command's batched, padded scoring against one-sequence prefills, dense and
// sparse (the prompts are longer than index_topk 16).
func TestEvalRetrievalGreedy(t *testing.T) {
	dir := testutil.Testdata("tiny-dsa")
	m, err := model.Load(dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := backendFlag{Backend: "go"}.open()
	if err != nil {
		t.Fatal(err)
	}
	V := m.Config.VocabSize
	for _, dense := range []bool{true, false} {
		var docs []evalDoc
		var want []bool
		for i, n := range []int{40, 29, 33} {
			ids := make([]int32, n)
			for j := range ids {
				ids[j] = int32(2 + (j*37+i*11)%(V-2))
			}
			p := len(ids)
			for range 3 { // greedy continuation, one prefill per token
				res, err := m.RunPrefill(backend, ids, model.Options{Dense: dense})
				if err != nil {
					t.Fatal(err)
				}
				last := res.Logits[(len(ids)-1)*V : len(ids)*V]
				ids = append(ids, int32(evalArgmax(last)))
			}
			ok := i != 1
			if !ok {
				ids[p+2] = (ids[p+2] + 1) % int32(V) // the last answer token wrong
			}
			docs = append(docs, evalDoc{ids: append(ids, 1), ansStart: p, ansTokens: 3, depth: float64(i) / 3})
			want = append(want, ok)
		}
		c := &evalRetrievalCmd{evalModelFlags: evalModelFlags{backendFlag: backendFlag{Backend: "go"}, Model: dir, Dense: dense, Batch: 2, DType: "f32"}}
		r, err := c.evaluate(docs, 1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Correct != 2 || r.N != 3 {
			t.Errorf("dense %v: %d/%d correct, want 2/3 (%+v)", dense, r.Correct, r.N, r)
		}
		if want := 8.0 / 9; math.Abs(r.TokenAccuracy-want) > 1e-9 {
			t.Errorf("dense %v: answer-token accuracy %v, want %v", dense, r.TokenAccuracy, want)
		}
		// The mean NLL over the documents, from single prefills.
		var sum float64
		var cnt int
		for _, d := range docs {
			res, err := m.RunPrefill(backend, d.ids, model.Options{Dense: dense})
			if err != nil {
				t.Fatal(err)
			}
			for t := 0; t+1 < len(d.ids); t++ {
				sum += evalNLL(res.Logits[t*V:(t+1)*V], int(d.ids[t+1]))
				cnt++
			}
		}
		if want := sum / float64(cnt); math.Abs(r.LMLoss-want) > 1e-4 {
			t.Errorf("dense %v: lm loss %v, prefills give %v", dense, r.LMLoss, want)
		}
	}
}

func evalArgmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func evalNLL(logits []float32, target int) float64 {
	mx := float64(slices.Max(logits))
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(z) - float64(logits[target])
}

// TestEvalCommands runs data synth (retrieval, several questions), eval retrieval and eval summary on the
// tiny model with a small tokenizer trained here.
func TestEvalCommands(t *testing.T) {
	dir := t.TempDir()
	exs, err := data.Generate(data.Retrieval{Tokens: 300, Pairs: 2}, 1, 20)
	if err != nil {
		t.Fatal(err)
	}
	var text []byte
	for _, ex := range exs {
		text = append(text, ex.Text+"\n"...)
	}
	if err := os.WriteFile(filepath.Join(dir, "text.txt"), text, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.TrainFiles([]string{filepath.Join(dir, "text.txt")}, 300, tokenizer.TrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokPath := filepath.Join(dir, "tokenizer.json")
	if err := tok.Save(tokPath); err != nil {
		t.Fatal(err)
	}
	if err := runCLI(t, "data", "synth", "--task", "retrieval", "--n", "3", "--tokens", "400", "--pairs", "3", "--questions", "3", "--tokenizer", tokPath,
		"--out", filepath.Join(dir, "train.jsonl")); err != nil {
		t.Fatal(err)
	}
	if err := runCLI(t, "data", "tokenize", "--tokenizer", tokPath, "--out", filepath.Join(dir, "shards"), filepath.Join(dir, "train.jsonl")); err != nil {
		t.Fatal(err)
	}
	lmJS := filepath.Join(dir, "exp", "eval", "tiny.lm.json")
	if err := runCLI(t, "eval", "lm", "--model", testutil.Testdata("tiny-dsa"), "--data", filepath.Join(dir, "shards"), "--held-out", "1",
		"--rows", "3", "--seq-len", "64", "--batch", "2", "--dense", "--json", lmJS); err != nil {
		t.Fatal(err)
	}
	var lm LMResult
	if ok, err := evalReadJSON(lmJS, &lm); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if lm.Rows != 3 || lm.Tokens < 3*60 || lm.Tokens > 3*64 || !(lm.LMLoss > 4 && lm.LMLoss < 8) || !lm.Dense || len(lm.RowLoss) != 3 {
		t.Errorf("lm result %+v", lm) // a random 320-id model: about ln 320 = 5.8
	}
	js := filepath.Join(dir, "exp", "eval", "tiny.retrieval.json")
	if err := runCLI(t, "eval", "retrieval", "--model", testutil.Testdata("tiny-dsa"), "--tokenizer", tokPath, "--backend", "go",
		"--n", "3", "--tokens", "200", "--pairs", "2", "--json", js); err != nil {
		t.Fatal(err)
	}
	var r RetrievalResult
	if ok, err := evalReadJSON(js, &r); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if r.N != 3 || r.Accuracy < 0 || r.Accuracy > 1 || r.TokenAccuracy < 0 || r.TokenAccuracy > 1 || len(r.ByDepth) != 10 ||
		!(r.LMLoss > 0) || r.Dense || r.IndexTopK != 16 || r.MeanLen < 150 || r.MeanLen > 201 {
		t.Errorf("result %+v", r)
	}
	if len(r.DocAnswerLoss) != r.N || len(r.DocCorrect) != r.N {
		t.Errorf("per-document results: %d losses, %d flags for %d documents", len(r.DocAnswerLoss), len(r.DocCorrect), r.N)
	}
	nOK := 0
	for _, ok := range r.DocCorrect {
		if ok {
			nOK++
		}
	}
	if nOK != r.Correct {
		t.Errorf("%d documents flagged correct, %d counted", nOK, r.Correct)
	}
	// A reference arm on the same documents, each answer 0.5 nats better
	// and the first one answered exactly.
	dense := r
	dense.DocAnswerLoss = slices.Clone(r.DocAnswerLoss)
	dense.DocCorrect = slices.Clone(r.DocCorrect)
	for i := range dense.DocAnswerLoss {
		dense.DocAnswerLoss[i] -= 0.5
	}
	flipped := !dense.DocCorrect[0]
	dense.DocCorrect[0] = true
	b, err := json.Marshal(dense)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "exp", "eval", "dense.retrieval.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	denseLM := lm // its held-out rows 0.25 nats better
	denseLM.RowLoss = slices.Clone(lm.RowLoss)
	for i := range denseLM.RowLoss {
		denseLM.RowLoss[i] -= 0.25
	}
	if b, err = json.Marshal(denseLM); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "exp", "eval", "dense.lm.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A learning curve of two checkpoints, the copy probe at one of them.
	for _, c := range [][2]string{
		{js, "curve-step-00000200.json"}, {js, "curve-step-00000100.json"},
		{lmJS, "curve-step-00000200-told1.json"}, {lmJS, "curve-step-00000200-told2.json"},
	} {
		b, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "exp", "eval", c[1]), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := runCLI(t, "eval", "summary", filepath.Join(dir, "exp")); err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Arms   []ArmResult
		Curve  []CurvePoint
		Paired []Paired
	}
	if ok, err := evalReadJSON(filepath.Join(dir, "exp", "summary.json"), &sum); !ok || err != nil {
		t.Fatal(ok, err)
	}
	wantOnlyRef := 0
	if flipped {
		wantOnlyRef = 1
	}
	if len(sum.Paired) != 1 || sum.Paired[0].Arm != "tiny" || math.Abs(sum.Paired[0].AnswerLossDiff-0.5) > 1e-9 ||
		sum.Paired[0].AnswerLossSE > 1e-9 || sum.Paired[0].OnlyRef != wantOnlyRef || sum.Paired[0].OnlyArm != 0 ||
		sum.Paired[0].Rows != 3 || math.Abs(sum.Paired[0].LMLossDiff-0.25) > 1e-9 {
		t.Errorf("paired against dense: %+v, want tiny 0.5 nats worse, %d only in dense", sum.Paired, wantOnlyRef)
	}
	if len(sum.Arms) != 2 || sum.Arms[1].Arm != "tiny" || sum.Arms[1].Retrieval == nil || sum.Arms[1].LM == nil {
		b, _ := json.Marshal(sum)
		t.Errorf("summary %s", b)
	}
	if len(sum.Curve) != 2 || sum.Curve[0].Step != 100 || sum.Curve[1].Step != 200 || sum.Curve[0].Retrieval == nil ||
		sum.Curve[0].ToldOnce != nil || sum.Curve[1].ToldTwice == nil || *sum.Curve[1].ToldTwice != lm.LMLoss {
		b, _ := json.Marshal(sum.Curve)
		t.Errorf("curve %s", b)
	}
	for _, png := range []string{"bars.png", "curve.png"} {
		if _, err := os.Stat(filepath.Join(dir, "exp", png)); err != nil {
			t.Error(err)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "exp", "summary.md"))
	if err != nil || !strings.Contains(string(md), "| 200 | ") {
		t.Errorf("summary.md has no curve row for step 200 (%v):\n%s", err, md)
	}
	if err := runCLI(t, "eval", "summary", t.TempDir()); err == nil || !strings.Contains(err.Error(), "has no eval") {
		t.Errorf("summary of an empty directory: %v, want an error naming what is missing", err)
	}
}

func TestPairedDiff(t *testing.T) {
	for _, c := range []struct {
		name     string
		a, b     []float64
		mean, se float64
	}{
		{"none", nil, nil, 0, 0},
		{"one", []float64{2}, []float64{1}, 1, 0},
		{"equal", []float64{1, 2, 3}, []float64{1, 2, 3}, 0, 0},
		{"a constant shift", []float64{1, 2, 3}, []float64{0.5, 1.5, 2.5}, 0.5, 0},
		{"mixed", []float64{1.5, 2.5, 2.5}, []float64{1, 2, 3}, 1.0 / 6, math.Sqrt(1.0/3) / math.Sqrt(3)},
	} {
		mean, se := pairedDiff(c.a, c.b)
		if math.Abs(mean-c.mean) > 1e-12 || math.Abs(se-c.se) > 1e-12 {
			t.Errorf("%s: mean %g ± %g, want %g ± %g", c.name, mean, se, c.mean, c.se)
		}
	}
}
