package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/dsv32/dsv32/internal/atomicfile"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train"
	"github.com/dsv32/dsv32/train/data"
)

// evalCmd is `dsv32 eval`: held-out measurements of a checkpoint, dense or
// sparse, and the DSA experiment's summary (docs/dsa-experiment.md).
type evalCmd struct {
	Retrieval evalRetrievalCmd `cmd:"" help:"Held-out long-context retrieval: exact answer accuracy (teacher-forced argmax = greedy decoding of the answer) and LM loss."`
	LM        evalLMCmd        `cmd:"" name:"lm" help:"Held-out LM loss on token shards: the rows dsv32 train evaluates (same split and packing), dense or sparse."`
	Summary   evalSummaryCmd   `cmd:"" help:"Collect an experiment directory's eval JSONs and runs into summary.json, summary.md and charts."`
}

// evalModelFlags load a checkpoint for scoring.
type evalModelFlags struct {
	backendFlag
	Model string `required:"" type:"existingdir" placeholder:"DIR" help:"Checkpoint directory (config.json, model.safetensors; tokenizer.json unless --tokenizer)."`
	Dense bool   `help:"Attend to every causal key (no top-k): the model as a dense-attention model."`
	Batch int    `default:"4" placeholder:"B" help:"Rows per forward pass."`
	DType string `name:"dtype" enum:"f32,bf16" default:"f32" help:"Compute dtype (weights are loaded as float32): f32 or bf16 (GPU)."`
	JSON  string `name:"json" type:"path" placeholder:"FILE" help:"Also write the result as JSON here."`
}

// evalScorer runs the model on fixed-shape batches [B, T] of data.Rows and
// returns each target's negative log-likelihood and the argmax prediction.
type evalScorer struct {
	exec *gm.Exec
	B, T int
}

func (f *evalModelFlags) open(T int) (*evalScorer, *model.Model, compute.Backend, error) {
	if f.Batch < 1 {
		return nil, nil, nil, fmt.Errorf("eval: --batch %d, want at least 1", f.Batch)
	}
	backend, err := f.backendFlag.open()
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := model.Load(f.Model, dtypes.Float32)
	if err != nil {
		return nil, nil, nil, err
	}
	if f.DType == "bf16" {
		model.SetComputeDType(m.Store, dtypes.BFloat16)
	}
	s, err := newEvalScorer(backend, m, f.Batch, T, f.Dense)
	return s, m, backend, err
}

func newEvalScorer(backend compute.Backend, m *model.Model, B, T int, dense bool) (s *evalScorer, err error) {
	defer evalCatch(&err)
	s = &evalScorer{B: B, T: T}
	s.exec, err = gm.NewExec(backend, m.Store, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
		tokens, targets, pos, seg := in[0], in[1], in[2], in[3]
		g := tokens.Graph()
		out := model.Forward(scope, m.Config, tokens, pos, nil, model.Options{
			Dense:      dense,
			Segments:   seg,
			TokenMask:  graph.ConvertDType(graph.NotEqual(seg, graph.ScalarZero(g, dtypes.Int32)), dtypes.Float32),
			NativeTopK: native(backend),
		})
		lp := graph.LogSoftmax(graph.ConvertDType(out.Logits, dtypes.Float32), -1) // [B, T, V]
		ix := shapes.Make(dtypes.Int32, B, T, 1)
		at := graph.Concatenate([]*graph.Node{graph.Iota(g, ix, 0), graph.Iota(g, ix, 1), graph.ExpandAxes(targets, -1)}, -1) // [B, T, 3]
		nll := graph.Neg(graph.Gather(lp, at))                                                                                // [B, T]
		return []*graph.Node{nll, graph.ConvertDType(graph.ArgMax(lp, -1), dtypes.Int32)}
	})
	return s, err
}

func evalCatch(err *error) {
	if r := recover(); r != nil {
		if e, ok := r.(error); ok {
			*err = fmt.Errorf("eval: %w", e)
		} else {
			*err = fmt.Errorf("eval: %v", r)
		}
	}
}

// score runs rows (each of s.T+1 tokens) in batches of s.B, the last one
// filled with padding rows, and returns per row the targets' NLL and argmax.
func (s *evalScorer) score(rows []data.Row) (nll [][]float32, argmax [][]int32, err error) {
	defer evalCatch(&err)
	B, T := s.B, s.T
	padRow := data.Row{Tokens: make([]int32, T+1), Segments: make([]int32, T+1), Positions: make([]int32, T+1), Mask: make([]float32, T)}
	for i := 0; i < len(rows); i += B {
		var tok, tgt, pos, seg []int32
		for k := range B {
			r := padRow
			if i+k < len(rows) {
				r = rows[i+k]
			}
			if len(r.Tokens) != T+1 || len(r.Segments) != T+1 || len(r.Positions) != T+1 {
				return nil, nil, fmt.Errorf("eval: row %d has %d tokens, want %d", i+k, len(r.Tokens), T+1)
			}
			tok = append(tok, r.Tokens[:T]...)
			tgt = append(tgt, r.Tokens[1:]...)
			pos = append(pos, r.Positions[:T]...)
			seg = append(seg, r.Segments[:T]...)
		}
		outs, err := s.exec.Exec(
			tensors.FromFlatDataAndDimensions(tok, B, T), tensors.FromFlatDataAndDimensions(tgt, B, T),
			tensors.FromFlatDataAndDimensions(pos, B, T), tensors.FromFlatDataAndDimensions(seg, B, T))
		if err != nil {
			return nil, nil, err
		}
		n := tensors.MustCopyFlatData[float32](outs[0])
		a := tensors.MustCopyFlatData[int32](outs[1])
		for k := range min(B, len(rows)-i) {
			nll = append(nll, n[k*T:(k+1)*T])
			argmax = append(argmax, a[k*T:(k+1)*T])
		}
	}
	return nll, argmax, nil
}

// ---------------------------------------------------------------------------
// eval retrieval

type evalRetrievalCmd struct {
	evalModelFlags
	Tokenizer string `type:"existingfile" placeholder:"FILE" help:"tokenizer.json (default: the model directory's)."`
	N         int    `default:"64" help:"Held-out examples."`
	Tokens    int    `default:"4096" placeholder:"L" help:"Tokens per document (measured with the tokenizer)."`
	MaxTokens int    `default:"0" placeholder:"L" help:"When above --tokens, lengths are uniform in [--tokens, --max-tokens]."`
	Pairs     int    `default:"4" help:"Secret numbers per document, one asked for."`
	Digits    int    `default:"0" help:"Digits per secret number (0: 6)."`
	Spaced    bool   `help:"Digits written apart, as 'data synth --spaced' writes them."`
	Letters   bool   `help:"Values are letters, as 'data synth --letters' writes them."`
	Restate   bool   `help:"Answers restate the fact, as 'data synth --restate' writes them."`
	Words     int    `default:"0" help:"The filler's words per word list, as 'data synth --words' (0: all)."`
	Seed      uint64 `default:"1000003" help:"Seed of the examples: keep it apart from the training data's seeds, so they are held out."`
}

// RetrievalResult is what eval retrieval reports.
type RetrievalResult struct {
	Model     string  `json:"model"`
	Dense     bool    `json:"dense"`
	IndexTopK int     `json:"index_topk"`
	N         int     `json:"n"`
	Seed      uint64  `json:"seed"`
	MeanLen   float64 `json:"mean_tokens"` // document tokens, EOS included
	// Accuracy: examples whose every answer token is the argmax given the
	// prompt and the answer's earlier tokens, i.e. greedy decoding would write
	// the answer's tokens exactly.
	Accuracy      float64    `json:"accuracy"`
	Correct       int        `json:"correct"`
	TokenAccuracy float64    `json:"answer_token_accuracy"` // over all answer tokens
	AnswerLoss    float64    `json:"answer_loss"`           // mean NLL of the answer tokens
	LMLoss        float64    `json:"lm_loss"`               // mean NLL over every predicted token of the documents
	ByDepth       []*float64 `json:"accuracy_by_depth"`     // ten buckets of where the fact sat; null when empty
	// Per document, in order: the mean NLL of its answer tokens and whether
	// every one was the argmax. Arms scored on the same documents compare
	// document by document (eval summary's paired table).
	DocAnswerLoss []float64 `json:"doc_answer_loss,omitempty"`
	DocCorrect    []bool    `json:"doc_correct,omitempty"`
	Seconds       float64   `json:"seconds"`
}

// evalDoc is one tokenised example: doc = prompt ++ " answer" ++ EOS.
type evalDoc struct {
	ids       []int32
	ansStart  int // index in ids of the answer's first token
	ansTokens int
	depth     float64
}

func (c *evalRetrievalCmd) Run() error {
	start := time.Now()
	if c.N < 1 || c.Tokens < 1 {
		return fmt.Errorf("eval retrieval: --n %d, --tokens %d: want at least 1", c.N, c.Tokens)
	}
	tokPath := c.Tokenizer
	if tokPath == "" {
		tokPath = filepath.Join(c.Model, "tokenizer.json")
	}
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		return err
	}
	eos, err := dataEOS(tok)
	if err != nil {
		return err
	}
	task := data.Retrieval{Tokens: c.Tokens, MaxTokens: c.MaxTokens, Pairs: c.Pairs, Digits: c.Digits, Spaced: c.Spaced, Restate: c.Restate, Letters: c.Letters, Words: c.Words,
		Count: func(s string) int { return len(tok.Encode(s)) }}
	exs, err := data.Generate(task, c.Seed, c.N)
	if err != nil {
		return err
	}
	docs, err := evalTokenizeRetrieval(tok, exs, int32(eos))
	if err != nil {
		return err
	}
	res, err := c.evaluate(docs, int32(eos))
	if err != nil {
		return err
	}
	res.Seed, res.Seconds = c.Seed, time.Since(start).Seconds()
	return evalReport(res, c.JSON, fmt.Sprintf("retrieval %s (%s, top-k %d): accuracy %d/%d = %.3f, answer tokens %.3f, answer loss %.4f, lm loss %.4f, %.0f tokens/doc",
		c.Model, evalAttn(res.Dense), res.IndexTopK, res.Correct, res.N, res.Accuracy, res.TokenAccuracy, res.AnswerLoss, res.LMLoss, res.MeanLen))
}

// evalTokenizeRetrieval encodes each example as the training data has it
// (Text then EOS), and finds the answer: Text is Prompt + " " + Answer, and
// the encoding of the two parts must equal the whole's, so the span is exact.
func evalTokenizeRetrieval(tok *tokenizer.BPE, exs []data.Example, eos int32) ([]evalDoc, error) {
	docs := make([]evalDoc, len(exs))
	for i, ex := range exs {
		if ex.Answer == "" || ex.Text != ex.Prompt+" "+ex.Answer {
			return nil, fmt.Errorf("eval: example %d: text is not prompt + \" \" + answer", i)
		}
		p, a := tok.Encode(ex.Prompt), tok.Encode(" "+ex.Answer)
		if whole := tok.Encode(ex.Text); !slices.Equal(whole, append(slices.Clone(p), a...)) {
			return nil, fmt.Errorf("eval: example %d: the tokenizer merges the answer into the prompt; the answer's span is not exact", i)
		}
		d := evalDoc{ansStart: len(p), ansTokens: len(a), depth: ex.Depth}
		for _, id := range append(p, a...) {
			d.ids = append(d.ids, int32(id))
		}
		d.ids = append(d.ids, eos)
		docs[i] = d
	}
	return docs, nil
}

// evaluate scores docs, each in a row of its own (one segment, positions
// from 0, padded with eos to the longest).
func (c *evalRetrievalCmd) evaluate(docs []evalDoc, eos int32) (*RetrievalResult, error) {
	T := 0
	for _, d := range docs {
		T = max(T, len(d.ids)-1)
	}
	rows := make([]data.Row, len(docs))
	for i, d := range docs {
		r := data.Row{Tokens: make([]int32, T+1), Segments: make([]int32, T+1), Positions: make([]int32, T+1), Mask: make([]float32, T)}
		for t := range r.Tokens {
			r.Tokens[t] = eos
			if t < len(d.ids) {
				r.Tokens[t], r.Segments[t], r.Positions[t] = d.ids[t], 1, int32(t)
			}
		}
		rows[i] = r
	}
	s, m, _, err := c.open(T)
	if err != nil {
		return nil, err
	}
	defer s.exec.Finalize()
	nll, argmax, err := s.score(rows)
	if err != nil {
		return nil, err
	}
	return evalScoreRetrieval(docs, nll, argmax, c.Model, c.Dense, m.Config.IndexTopK), nil
}

// evalScoreRetrieval computes the metrics from per-target NLL and argmax: target
// t of a row is token t+1 of its document.
func evalScoreRetrieval(docs []evalDoc, nll [][]float32, argmax [][]int32, name string, dense bool, topk int) *RetrievalResult {
	res := &RetrievalResult{Model: name, Dense: dense, IndexTopK: topk, N: len(docs)}
	var acc data.Accuracy
	var lmSum, ansSum float64
	var lmN, ansN, ansOK, total int
	for i, d := range docs {
		total += len(d.ids)
		for t := 0; t+1 < len(d.ids); t++ {
			lmSum += float64(nll[i][t])
			lmN++
		}
		ok := true
		var docSum float64
		for j := range d.ansTokens {
			t := d.ansStart + j - 1 // predicts ids[ansStart+j]
			ansSum += float64(nll[i][t])
			docSum += float64(nll[i][t])
			ansN++
			if argmax[i][t] == d.ids[t+1] {
				ansOK++
			} else {
				ok = false
			}
		}
		res.DocAnswerLoss = append(res.DocAnswerLoss, docSum/float64(max(d.ansTokens, 1)))
		res.DocCorrect = append(res.DocCorrect, ok)
		b := min(9, max(0, int(d.depth*10)))
		acc.N++
		acc.Depth[b].N++
		if ok {
			acc.Correct++
			acc.Depth[b].Correct++
		}
	}
	res.Correct, res.Accuracy = acc.Correct, acc.Rate()
	res.TokenAccuracy = float64(ansOK) / float64(max(ansN, 1))
	res.AnswerLoss = ansSum / float64(max(ansN, 1))
	res.LMLoss = lmSum / float64(max(lmN, 1))
	res.MeanLen = float64(total) / float64(max(len(docs), 1))
	for _, b := range acc.Depth {
		if b.N == 0 {
			res.ByDepth = append(res.ByDepth, nil)
		} else {
			r := float64(b.Correct) / float64(b.N)
			res.ByDepth = append(res.ByDepth, &r)
		}
	}
	return res
}

func evalAttn(dense bool) string {
	if dense {
		return "dense"
	}
	return "sparse"
}

// evalReport prints line and, with path, writes v as JSON.
func evalReport(v any, path, line string) error {
	fmt.Println(line)
	if path == "" {
		return nil
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return atomicfile.Write(path, append(js, '\n'))
}

// ---------------------------------------------------------------------------
// eval lm

type evalLMCmd struct {
	evalModelFlags
	Data    string  `required:"" type:"existingdir" placeholder:"DIR" help:"Token shards (dsv32 data tokenize)."`
	HeldOut float64 `default:"0.01" placeholder:"FRAC" help:"The held-out fraction, by hash, as given to dsv32 train (1: every document)."`
	Rows    int     `default:"16" placeholder:"N" help:"Held-out rows to evaluate (at most one pass)."`
	SeqLen  int     `default:"512" placeholder:"T" help:"Tokens per row."`
	Pack    string  `enum:"boundaries,concat" default:"boundaries" help:"How documents fill rows, as in dsv32 train."`
}

// LMResult is what eval lm reports.
type LMResult struct {
	Model   string  `json:"model"`
	Dense   bool    `json:"dense"`
	Rows    int     `json:"rows"`
	SeqLen  int     `json:"seq_len"`
	Tokens  int     `json:"tokens"`  // counted targets
	LMLoss  float64 `json:"lm_loss"` // token-weighted mean NLL
	Seconds float64 `json:"seconds"`
	// RowLoss is each row's mean NLL, in order, for comparisons row by row.
	RowLoss []float64 `json:"row_loss,omitempty"`
}

func (c *evalLMCmd) Run() error {
	start := time.Now()
	ds, err := data.Open(c.Data)
	if err != nil {
		return err
	}
	defer ds.Close()
	_, held, err := data.Split(ds, c.HeldOut)
	if err != nil {
		return err
	}
	if held.NumDocs() == 0 {
		return fmt.Errorf("eval lm: no document of %s is held out at fraction %v", c.Data, c.HeldOut)
	}
	mode := data.Boundaries
	if c.Pack == "concat" {
		mode = data.Concat
	}
	p, err := data.NewPacker(held, data.PackConfig{SeqLen: c.SeqLen, Mode: mode, Pad: int32(ds.Index.EOS)})
	if err != nil {
		return err
	}
	rows := heldOutRows(p, c.Rows)
	s, m, _, err := c.open(c.SeqLen)
	if err != nil {
		return err
	}
	defer s.exec.Finalize()
	if v := ds.Index.Tokenizer.VocabSize; v > m.Config.VocabSize {
		return fmt.Errorf("eval lm: %s was tokenised with %d ids, the model's vocabulary is %d", c.Data, v, m.Config.VocabSize)
	}
	nll, _, err := s.score(rows)
	if err != nil {
		return err
	}
	res := &LMResult{Model: c.Model, Dense: c.Dense, Rows: len(rows), SeqLen: c.SeqLen}
	var sum float64
	for i, r := range rows {
		var rowSum, rowW float64
		for t, w := range r.Mask {
			if w > 0 {
				sum += float64(w) * float64(nll[i][t])
				rowSum += float64(w) * float64(nll[i][t])
				rowW += float64(w)
				res.Tokens++
			}
		}
		res.RowLoss = append(res.RowLoss, rowSum/max(rowW, 1))
	}
	res.LMLoss = sum / float64(max(res.Tokens, 1))
	res.Seconds = time.Since(start).Seconds()
	return evalReport(res, c.JSON, fmt.Sprintf("lm %s (%s): loss %.4f over %d tokens in %d rows of %d", c.Model, evalAttn(c.Dense), res.LMLoss, res.Tokens, res.Rows, c.SeqLen))
}

// ---------------------------------------------------------------------------
// eval summary

type evalSummaryCmd struct {
	Dir  string   `arg:"" type:"existingdir" help:"The experiment directory: eval/<arm>.retrieval.json and eval/<arm>.lm.json, runs/<name>/metrics.jsonl, and the learning curve's eval/curve-step-*.json."`
	Arms []string `placeholder:"NAME,..." help:"Arms in the order to show (default: every arm found, sorted)."`
	Out  string   `type:"path" placeholder:"DIR" help:"Where to write summary.json, summary.md and the charts (default: the experiment directory)."`
	Ref  string   `name:"reference" default:"dense" placeholder:"ARM" help:"The arm the others are compared with document by document."`
}

// ArmResult is one arm's row of the summary.
type ArmResult struct {
	Arm       string           `json:"arm"`
	Retrieval *RetrievalResult `json:"retrieval,omitempty"`
	LM        *LMResult        `json:"lm,omitempty"`
}

func (c *evalSummaryCmd) Run() error {
	out := c.Out
	if out == "" {
		out = c.Dir
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	arms := c.Arms
	if len(arms) == 0 {
		files, _ := filepath.Glob(filepath.Join(c.Dir, "eval", "*.json"))
		for _, f := range files {
			if strings.HasPrefix(filepath.Base(f), "curve-") {
				continue // the learning curve's checkpoints, not arms
			}
			a := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".json"), ".retrieval"), ".lm")
			if !slices.Contains(arms, a) {
				arms = append(arms, a)
			}
		}
		slices.Sort(arms)
	}
	var rows []ArmResult
	for _, a := range arms {
		r := ArmResult{Arm: a}
		var rr RetrievalResult
		if ok, err := evalReadJSON(filepath.Join(c.Dir, "eval", a+".retrieval.json"), &rr); err != nil {
			return err
		} else if ok {
			r.Retrieval = &rr
		}
		var lr LMResult
		if ok, err := evalReadJSON(filepath.Join(c.Dir, "eval", a+".lm.json"), &lr); err != nil {
			return err
		} else if ok {
			r.LM = &lr
		}
		if r.Retrieval == nil && r.LM == nil {
			slog.Warn("no eval results for an arm", "arm", a)
		}
		rows = append(rows, r)
	}
	runs, err := evalReadRuns(filepath.Join(c.Dir, "runs"))
	if err != nil {
		return err
	}
	curve, err := evalReadCurve(filepath.Join(c.Dir, "eval"))
	if err != nil {
		return err
	}
	paired := evalPair(rows, c.Ref)
	sum := map[string]any{"arms": rows, "runs": evalRunSummaries(runs)}
	if len(paired) > 0 {
		sum["paired"] = paired
	}
	if len(curve) > 0 {
		sum["curve"] = curve
	}
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(out, "summary.json"), append(js, '\n')); err != nil {
		return err
	}
	if len(rows) == 0 && len(runs) == 0 && len(curve) == 0 {
		return fmt.Errorf("eval summary: %s has no eval/<arm>.*.json, runs/*/metrics.jsonl or eval/curve-step-*.json", c.Dir)
	}
	var parts []string
	if len(rows) > 0 {
		parts = append(parts, evalArmsTable(rows))
	}
	if len(paired) > 0 {
		parts = append(parts, evalPairedTable(paired, c.Ref))
	}
	if len(runs) > 0 {
		parts = append(parts, evalRunsTable(evalRunSummaries(runs)))
	}
	if len(curve) > 0 {
		parts = append(parts, evalCurveTable(curve))
	}
	md := strings.Join(parts, "\n")
	if err := atomicfile.Write(filepath.Join(out, "summary.md"), []byte(md)); err != nil {
		return err
	}
	fmt.Print(md)
	written := []string{"summary.json", "summary.md"}
	if len(rows) > 0 {
		if err := evalPlotBars(filepath.Join(out, "bars.png"), rows); err != nil {
			return err
		}
		written = append(written, "bars.png")
	}
	charts, err := evalPlotCurves(out, runs)
	if err != nil {
		return err
	}
	written = append(written, charts...)
	if len(curve) > 0 {
		if err := evalPlotCurve(filepath.Join(out, "curve.png"), curve); err != nil {
			return err
		}
		written = append(written, "curve.png")
	}
	fmt.Printf("wrote %s: %s\n", out, strings.Join(written, ", "))
	return nil
}

// Paired compares an arm with the reference arm on the same retrieval
// documents: the mean per-document difference in answer loss (arm −
// reference) with its standard error, and the documents only one of the two
// answers exactly (McNemar's discordant pairs).
type Paired struct {
	Arm            string  `json:"arm"`
	N              int     `json:"n"`
	AnswerLossDiff float64 `json:"answer_loss_diff"`
	AnswerLossSE   float64 `json:"answer_loss_se"`
	OnlyArm        int     `json:"only_arm_correct"`
	OnlyRef        int     `json:"only_reference_correct"`
	// The held-out LM loss row by row (arm − reference), when both have it.
	Rows         int     `json:"rows,omitempty"`
	LMLossDiff   float64 `json:"lm_loss_diff,omitempty"`
	LMLossDiffSE float64 `json:"lm_loss_se,omitempty"`
}

// evalPair compares every arm with ref on the documents both were scored on
// (same count and seed); none when ref has no per-document results.
func evalPair(rows []ArmResult, ref string) []Paired {
	var base *RetrievalResult
	var baseLM *LMResult
	for _, r := range rows {
		if r.Arm == ref {
			base, baseLM = r.Retrieval, r.LM
		}
	}
	if base == nil || len(base.DocAnswerLoss) == 0 {
		return nil
	}
	var out []Paired
	for _, r := range rows {
		x := r.Retrieval
		if r.Arm == ref || x == nil || x.Seed != base.Seed || len(x.DocAnswerLoss) != len(base.DocAnswerLoss) ||
			len(x.DocCorrect) != len(base.DocCorrect) {
			continue
		}
		p := Paired{Arm: r.Arm, N: len(x.DocAnswerLoss)}
		p.AnswerLossDiff, p.AnswerLossSE = pairedDiff(x.DocAnswerLoss, base.DocAnswerLoss)
		for i := range x.DocCorrect {
			switch {
			case x.DocCorrect[i] && !base.DocCorrect[i]:
				p.OnlyArm++
			case !x.DocCorrect[i] && base.DocCorrect[i]:
				p.OnlyRef++
			}
		}
		if l := r.LM; l != nil && baseLM != nil && len(l.RowLoss) > 0 && len(l.RowLoss) == len(baseLM.RowLoss) {
			p.Rows = len(l.RowLoss)
			p.LMLossDiff, p.LMLossDiffSE = pairedDiff(l.RowLoss, baseLM.RowLoss)
		}
		out = append(out, p)
	}
	return out
}

// pairedDiff is the mean of a[i] − b[i] and its standard error (the sample
// standard deviation of the differences over √n; 0 for fewer than two).
func pairedDiff(a, b []float64) (mean, se float64) {
	n := float64(len(a))
	if n == 0 {
		return 0, 0
	}
	for i := range a {
		mean += a[i] - b[i]
	}
	mean /= n
	if n < 2 {
		return mean, 0
	}
	var ss float64
	for i := range a {
		d := a[i] - b[i] - mean
		ss += d * d
	}
	return mean, math.Sqrt(ss/(n-1)) / math.Sqrt(n)
}

// evalPairedTable is the paired comparison as a markdown table.
func evalPairedTable(ps []Paired, ref string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| arm, against %s on the same documents and rows | answer loss difference (± standard error) | exact only in the arm | exact only in %s | held-out LM loss difference |\n", ref, ref)
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, p := range ps {
		lm := "—"
		if p.Rows > 0 {
			lm = fmt.Sprintf("%+.4f ± %.4f (%d rows)", p.LMLossDiff, p.LMLossDiffSE, p.Rows)
		}
		fmt.Fprintf(&b, "| %s | %+.4f ± %.4f (n %d) | %d | %d | %s |\n", p.Arm, p.AnswerLossDiff, p.AnswerLossSE, p.N, p.OnlyArm, p.OnlyRef, lm)
	}
	return b.String()
}

// CurvePoint is one pre-training checkpoint of the experiment's learning
// curve (CURVE=K): dense retrieval, and the long-range copy probe (the LM
// loss of held-out stories told once and told twice; twice ≈ half of once
// means the second telling is copied from the first).
type CurvePoint struct {
	Step      int              `json:"step"`
	Retrieval *RetrievalResult `json:"retrieval,omitempty"`
	ToldOnce  *float64         `json:"told_once,omitempty"`
	ToldTwice *float64         `json:"told_twice,omitempty"`
}

// evalReadCurve reads dir/curve-step-NNNNNNNN[-told1|-told2].json, by step.
func evalReadCurve(dir string) ([]CurvePoint, error) {
	files, err := filepath.Glob(filepath.Join(dir, "curve-step-*.json"))
	if err != nil {
		return nil, err
	}
	byStep := map[int]*CurvePoint{}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "curve-step-"), ".json")
		num, kind, _ := strings.Cut(name, "-")
		var step int
		if _, err := fmt.Sscanf(num, "%d", &step); err != nil {
			return nil, fmt.Errorf("%s: no step number in the name", f)
		}
		pt := byStep[step]
		if pt == nil {
			pt = &CurvePoint{Step: step}
			byStep[step] = pt
		}
		switch kind {
		case "":
			var r RetrievalResult
			if _, err := evalReadJSON(f, &r); err != nil {
				return nil, err
			}
			pt.Retrieval = &r
		case "told1", "told2":
			var r LMResult
			if _, err := evalReadJSON(f, &r); err != nil {
				return nil, err
			}
			if kind == "told1" {
				pt.ToldOnce = &r.LMLoss
			} else {
				pt.ToldTwice = &r.LMLoss
			}
		default:
			return nil, fmt.Errorf("%s: unknown curve file (want curve-step-N.json, -told1.json or -told2.json)", f)
		}
	}
	var out []CurvePoint
	for _, pt := range byStep {
		out = append(out, *pt)
	}
	slices.SortFunc(out, func(a, b CurvePoint) int { return a.Step - b.Step })
	return out, nil
}

// evalCurveTable is the learning curve as a markdown table.
func evalCurveTable(curve []CurvePoint) string {
	var b strings.Builder
	b.WriteString("| step | retrieval accuracy | answer-token accuracy | answer loss | stories told once | told twice |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	opt := func(v *float64) string {
		if v == nil {
			return "–"
		}
		return fmt.Sprintf("%.4f", *v)
	}
	for _, pt := range curve {
		acc, tok, loss := "–", "–", "–"
		if r := pt.Retrieval; r != nil {
			acc = fmt.Sprintf("%.3f (%d/%d)", r.Accuracy, r.Correct, r.N)
			tok = fmt.Sprintf("%.3f", r.TokenAccuracy)
			loss = fmt.Sprintf("%.4f", r.AnswerLoss)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", pt.Step, acc, tok, loss, opt(pt.ToldOnce), opt(pt.ToldTwice))
	}
	return b.String()
}

// evalPlotCurve draws the learning curve: retrieval accuracies on the left,
// the answer loss and the copy probe's losses on the right.
func evalPlotCurve(path string, curve []CurvePoint) error {
	var acc, tok, ans, once, twice plotter.XYs
	for _, pt := range curve {
		x := float64(pt.Step)
		if r := pt.Retrieval; r != nil {
			acc = append(acc, plotter.XY{X: x, Y: r.Accuracy})
			tok = append(tok, plotter.XY{X: x, Y: r.TokenAccuracy})
			ans = append(ans, plotter.XY{X: x, Y: r.AnswerLoss})
		}
		if pt.ToldOnce != nil {
			once = append(once, plotter.XY{X: x, Y: *pt.ToldOnce})
		}
		if pt.ToldTwice != nil {
			twice = append(twice, plotter.XY{X: x, Y: *pt.ToldTwice})
		}
	}
	left, right := plot.New(), plot.New()
	left.Title.Text, left.Y.Label.Text = "dense retrieval (held-out documents)", "accuracy"
	right.Title.Text, right.Y.Label.Text = "losses per token", "loss"
	for _, p := range []*plot.Plot{left, right} {
		p.X.Label.Text = "pre-training step"
		p.Legend.Top = true
	}
	left.Legend.Left = true
	var l, r []any
	for _, s := range []struct {
		name string
		xy   plotter.XYs
		to   *[]any
	}{
		{"exact answers", acc, &l}, {"answer tokens", tok, &l},
		{"answer", ans, &r}, {"stories told once", once, &r}, {"stories told twice", twice, &r},
	} {
		if len(s.xy) > 0 {
			*s.to = append(*s.to, s.name, s.xy)
		}
	}
	if err := plotutil.AddLinePoints(left, l...); err != nil {
		return err
	}
	if err := plotutil.AddLinePoints(right, r...); err != nil {
		return err
	}
	return evalSavePlots(path, 12, 4, left, right)
}

// evalReadJSON reads path into v; a missing file is (false, nil).
func evalReadJSON(path string, v any) (bool, error) {
	js, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(js, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

// evalRun is one training run's metrics.jsonl.
type evalRun struct {
	name  string
	stage string
	steps []train.Metrics
}

// evalReadRuns reads dir/<name>/metrics.jsonl for every run, sorted by name; the
// stage comes from the newest checkpoint's state.json when there is one.
func evalReadRuns(dir string) ([]evalRun, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var runs []evalRun
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		js, err := os.ReadFile(filepath.Join(dir, e.Name(), "metrics.jsonl"))
		if err != nil {
			continue
		}
		r := evalRun{name: e.Name()}
		sc := bufio.NewScanner(bytes.NewReader(js))
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			var m train.Metrics
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				r.steps = append(r.steps, m)
			}
		}
		if ck, err := train.Latest(filepath.Join(dir, e.Name())); err == nil {
			if st, err := train.ReadState(ck); err == nil {
				r.stage = string(st.Config.Stage)
			}
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// evalRunSummaries is each run's stage, steps, last losses and mean step time
// (steps after the first, which compiles).
func evalRunSummaries(runs []evalRun) []map[string]any {
	var out []map[string]any
	for _, r := range runs {
		s := map[string]any{"run": r.name, "stage": r.stage, "steps": len(r.steps)}
		if n := len(r.steps); n > 0 {
			last := r.steps[n-1]
			s["last_loss"], s["last_lm_loss"], s["last_kl"] = last.Loss, last.LMLoss, evalSum(last.KL)
			if last.EvalLoss != nil {
				s["last_eval_loss"] = *last.EvalLoss
			}
			var secs float64
			for _, m := range r.steps[min(1, n-1):] {
				if m.TokensPerS > 0 {
					secs += float64(m.Tokens) / m.TokensPerS
				}
			}
			s["seconds_per_step"] = secs / float64(max(1, n-1))
		}
		out = append(out, s)
	}
	return out
}

func evalSum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

func evalArmsTable(rows []ArmResult) string {
	var b strings.Builder
	b.WriteString("| arm | attention | held-out LM loss | retrieval accuracy | answer-token accuracy | answer loss | retrieval-doc LM loss |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	f := func(x float64) string { return fmt.Sprintf("%.4f", x) }
	for _, r := range rows {
		attn, lm, acc, tacc, al, rl := "—", "—", "—", "—", "—", "—"
		if r.LM != nil {
			attn, lm = evalAttn(r.LM.Dense), f(r.LM.LMLoss)
		}
		if x := r.Retrieval; x != nil {
			attn = evalAttn(x.Dense)
			acc = fmt.Sprintf("%.3f (%d/%d)", x.Accuracy, x.Correct, x.N)
			tacc, al, rl = fmt.Sprintf("%.3f", x.TokenAccuracy), f(x.AnswerLoss), f(x.LMLoss)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Arm, attn, lm, acc, tacc, al, rl)
	}
	return b.String()
}

func evalRunsTable(runs []map[string]any) string {
	var b strings.Builder
	b.WriteString("| run | stage | steps | s/step (after the first) | last LM loss | last Σ KL | last eval loss |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range runs {
		g := func(k, f string) string {
			if v, ok := r[k].(float64); ok {
				return fmt.Sprintf(f, v)
			}
			return "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %v | %s | %s | %s | %s |\n", r["run"], r["stage"], r["steps"],
			g("seconds_per_step", "%.3f"), g("last_lm_loss", "%.4f"), g("last_kl", "%.4f"), g("last_eval_loss", "%.4f"))
	}
	return b.String()
}

// evalPlotBars draws, per arm, the retrieval accuracy and answer-token accuracy
// (left) and the held-out and retrieval-document LM losses (right).
func evalPlotBars(path string, rows []ArmResult) error {
	names := make([]string, len(rows))
	vals := [4]plotter.Values{}
	for i, r := range rows {
		names[i] = r.Arm
		for k := range vals {
			vals[k] = append(vals[k], math.NaN())
		}
		if r.Retrieval != nil {
			vals[0][i], vals[1][i], vals[3][i] = r.Retrieval.Accuracy, r.Retrieval.TokenAccuracy, r.Retrieval.LMLoss
		}
		if r.LM != nil {
			vals[2][i] = r.LM.LMLoss
		}
	}
	mk := func(title, ylabel string, labels []string, vs []plotter.Values) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.Y.Label.Text = ylabel
		p.Legend.Top = true
		p.NominalX(names...)
		if len(names) > 6 { // slanted, so that long arm names (stage2-only@40) do not overlap
			p.X.Tick.Label.Rotation = math.Pi / 6
			p.X.Tick.Label.XAlign = draw.XRight
			p.X.Tick.Label.YAlign = draw.YCenter
		}
		w := vg.Points(14)
		for k, v := range vs {
			for i := range v {
				if math.IsNaN(v[i]) {
					v[i] = 0
				}
			}
			bc, err := plotter.NewBarChart(v, w)
			if err != nil {
				return nil, err
			}
			bc.Color = plotutil.Color(k)
			bc.LineStyle.Width = 0
			bc.Offset = w * vg.Length(float64(k)-float64(len(vs)-1)/2)
			p.Add(bc)
			p.Legend.Add(labels[k], bc)
		}
		return p, nil
	}
	acc, err := mk("held-out retrieval", "accuracy", []string{"exact answer", "answer tokens"}, vals[:2])
	if err != nil {
		return err
	}
	acc.Y.Min, acc.Y.Max = 0, 1.15
	loss, err := mk("held-out loss", "mean NLL (nats)", []string{"held-out rows (text + retrieval)", "retrieval documents"}, vals[2:])
	if err != nil {
		return err
	}
	top := 0.0
	for _, v := range vals[2:] {
		for _, x := range v {
			top = max(top, x)
		}
	}
	loss.Y.Min, loss.Y.Max = 0, 1.3*top+1e-9
	return evalSavePlots(path, max(14, 1.6*float64(len(rows))), 4.5, acc, loss)
}

// evalPlotCurves draws the runs' curves: the LM loss of every run that is not
// pre-training or stage 1 (stage 2 arms, dense continuation), the indexer KL
// (Σ over layers) of the DSA runs, and pre-training's loss. It returns the
// names of the charts it wrote (those with something to draw).
func evalPlotCurves(out string, runs []evalRun) (written []string, err error) {
	var lm, kl, pre []any
	for _, r := range runs {
		var l, k plotter.XYs
		for _, m := range r.steps {
			l = append(l, plotter.XY{X: float64(m.Step), Y: m.LMLoss})
			if len(m.KL) > 0 {
				k = append(k, plotter.XY{X: float64(m.Step), Y: evalSum(m.KL)})
			}
		}
		if len(l) == 0 {
			continue
		}
		switch {
		case r.stage == string(train.Pretrain) && r.name == "pretrain":
			pre = append(pre, r.name, evalSmooth(l))
		case r.stage == string(train.DSAWarmup):
		default:
			lm = append(lm, r.name, evalSmooth(l))
		}
		if len(k) > 0 {
			kl = append(kl, r.name, evalSmooth(k))
		}
	}
	for _, c := range []struct {
		file, title, y string
		lines          []any
	}{
		{"stage2-lm.png", "after pre-training: LM loss (training rows, smoothed)", "LM loss", lm},
		{"kl.png", "indexer KL, Σ over layers (stage 1: all keys; stage 2: selected keys)", "KL / token", kl},
		{"pretrain.png", "dense pre-training: LM loss (smoothed)", "LM loss", pre},
	} {
		if len(c.lines) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "step"
		p.Y.Label.Text = c.y
		p.Legend.Top = true
		if err := plotutil.AddLines(p, c.lines...); err != nil {
			return nil, err
		}
		if err := evalSavePlots(filepath.Join(out, c.file), 8, 4, p); err != nil {
			return nil, err
		}
		written = append(written, c.file)
	}
	return written, nil
}

// evalSmooth is a trailing moving average over up to 1/20 of the points.
func evalSmooth(xy plotter.XYs) plotter.XYs {
	w := max(1, len(xy)/20)
	out := make(plotter.XYs, len(xy))
	var s float64
	for i := range xy {
		s += xy[i].Y
		if i >= w {
			s -= xy[i-w].Y
		}
		out[i] = plotter.XY{X: xy[i].X, Y: s / float64(min(i+1, w))}
	}
	return out
}

// evalSavePlots writes plots side by side into one PNG (w, h inches in all).
func evalSavePlots(path string, w, h float64, ps ...*plot.Plot) error {
	if len(ps) == 1 {
		return ps[0].Save(vg.Length(w)*vg.Inch, vg.Length(h)*vg.Inch, path)
	}
	img := vgimg.New(vg.Length(w)*vg.Inch, vg.Length(h)*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(ps), PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	cs := plot.Align([][]*plot.Plot{ps}, tiles, dc)
	for j, p := range ps {
		p.Draw(cs[0][j])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return err
	}
	return atomicfile.Write(path, buf.Bytes())
}
