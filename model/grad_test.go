package model_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/checkpoint"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// gradients runs the fixture's tokens through Forward, builds loss(out) and
// returns the loss and d loss / d every weight variable, keyed by HF tensor
// name (experts split out of their stacked variables).
func gradients(t *testing.T, f *fixture, ids []int32, opts model.Options, loss func(out model.Outputs, tokens *graph.Node) (*graph.Node, []*graph.Node)) (float32, []float32, map[string][]float32) {
	t.Helper()
	cfg := f.m.Config
	vars := cfg.Vars(false)
	nExtras := 0
	exec, err := gm.NewExec(testutil.Backend(t), f.m.Store, func(scope *gm.Scope, tokens, pos *graph.Node) []*graph.Node {
		out := model.Forward(scope, cfg, tokens, pos, nil, opts)
		l, extras := loss(out, tokens)
		nExtras = len(extras)
		var nodes []*graph.Node
		for _, v := range vars {
			nodes = append(nodes, f.m.Store.GetVariable(v.Path).NodeValue(tokens.Graph()))
		}
		return append(append([]*graph.Node{l}, extras...), graph.Gradient(l, nodes...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	pos := make([]int32, len(ids))
	for i := range pos {
		pos[i] = int32(i)
	}
	outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(ids, 1, len(ids)), tensors.FromFlatDataAndDimensions(pos, 1, len(pos)))
	if err != nil {
		t.Fatal(err)
	}
	var extras []float32
	for _, o := range outs[1 : 1+nExtras] {
		extras = append(extras, tensors.MustCopyFlatData[float32](o)...)
	}
	grads := map[string][]float32{}
	for i, v := range vars {
		g := tensors.MustCopyFlatData[float32](outs[1+nExtras+i])
		for _, ts := range v.Tensors {
			if ts.Expert < 0 {
				grads[ts.Name] = g
				continue
			}
			n := len(g) / cfg.NumRoutedExperts
			grads[ts.Name] = g[ts.Expert*n : (ts.Expert+1)*n]
		}
	}
	return tensors.MustCopyFlatData[float32](outs[0])[0], extras, grads
}

// compareGrads checks every reference gradient with prefix against ours.
func compareGrads(t *testing.T, exp *checkpoint.Checkpoint, prefix string, grads map[string][]float32) int {
	t.Helper()
	n := 0
	worst, worstName := 0.0, ""
	for _, name := range exp.Names() {
		param, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		want, _, err := exp.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := grads[param]
		if !ok {
			t.Errorf("%s: no gradient for %s", name, param)
			continue
		}
		rel, maxAbs := testutil.RelErr(got, want)
		if rel > worst {
			worst, worstName = rel, param
		}
		if rel > testutil.Tol(1e-3) {
			t.Errorf("%s: relative error %.3g > 1e-3 (max abs %.3g)", name, rel, maxAbs)
		}
		n++
	}
	t.Logf("%s*: %d tensors, worst relative error %.3g (%s)", prefix, n, worst, worstName)
	return n
}

func scalar(t *testing.T, exp *checkpoint.Checkpoint, name string) float32 {
	t.Helper()
	v, _, err := exp.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

func TestLMGradientsMatchReference(t *testing.T) {
	f := loadFixture(t, "tiny-dsa", 40)
	exp, err := checkpoint.Open(testutil.Testdata("tiny-dsa", "train_expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Close()
	T := len(f.ids)
	loss, _, grads := gradients(t, f, f.ids[:T-1], model.Options{}, func(out model.Outputs, tokens *graph.Node) (*graph.Node, []*graph.Node) {
		targets := graph.Const(tokens.Graph(), [][]int32{f.ids[1:]})
		return model.LMLoss(out.Logits, targets, nil), nil
	})
	want := scalar(t, exp, "lm_loss")
	t.Logf("lm_loss %.7f, reference %.7f", loss, want)
	if d := float64(loss - want); d > 1e-5 || d < -1e-5 {
		t.Errorf("lm_loss %.7f, reference %.7f", loss, want)
	}
	if n := compareGrads(t, exp, "lm_grad.", grads); n < 50 {
		t.Errorf("only %d reference gradients compared", n)
	}
	// The indexer is outside the LM graph: its gradient must be exactly zero.
	for name, g := range grads {
		if strings.Contains(name, ".indexer.") {
			for _, v := range g {
				if v != 0 {
					t.Fatalf("%s: LM loss leaks gradient into the indexer", name)
				}
			}
		}
	}
}

func TestIndexerKLMatchesReference(t *testing.T) {
	f := loadFixture(t, "tiny-dsa", 40)
	exp, err := checkpoint.Open(testutil.Testdata("tiny-dsa", "train_expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Close()
	for _, tc := range []struct {
		stage string
		opts  model.Options
	}{
		{"warmup", model.Options{Dense: true, IndexerLoss: model.WarmupIndexerLoss}},
		{"sparse", model.Options{IndexerLoss: model.SparseIndexerLoss}},
	} {
		t.Run(tc.stage, func(t *testing.T) {
			_, losses, grads := gradients(t, f, f.ids, tc.opts, func(out model.Outputs, _ *graph.Node) (*graph.Node, []*graph.Node) {
				sum := out.IndexerKL[0]
				for _, l := range out.IndexerKL[1:] {
					sum = graph.Add(sum, l)
				}
				return sum, out.IndexerKL
			})
			if len(losses) != f.m.Config.NumHiddenLayers {
				t.Fatalf("%d indexer losses, want one per layer", len(losses))
			}
			for l, got := range losses {
				want := scalar(t, exp, fmt.Sprintf("kl_%s_loss.%d", tc.stage, l))
				t.Logf("layer %d: KL %.6f, reference %.6f", l, got, want)
				if rel := (got - want) / want; rel > 1e-3 || rel < -1e-3 {
					t.Errorf("layer %d: KL %.6f, reference %.6f", l, got, want)
				}
			}
			if n := compareGrads(t, exp, "kl_"+tc.stage+"_grad.", grads); n != 5*f.m.Config.NumHiddenLayers {
				t.Errorf("compared %d indexer gradients, want %d", n, 5*f.m.Config.NumHiddenLayers)
			}
		})
	}
}

// TestIndexerKLIgnoresPadding: with a token mask, padding queries add
// nothing to the indexer's KL (SFT rows are padded).
func TestIndexerKLIgnoresPadding(t *testing.T) {
	f := loadFixture(t, "tiny-dsa", 40)
	T := len(f.ids)
	exec, err := gm.NewExec(testutil.Backend(t), f.m.Store, func(scope *gm.Scope, tokens, pos, mask *graph.Node) []*graph.Node {
		full := model.Forward(scope, f.m.Config, tokens, pos, nil, model.Options{Dense: true, IndexerLoss: model.WarmupIndexerLoss})
		half := model.Forward(scope, f.m.Config, tokens, pos, nil, model.Options{Dense: true, IndexerLoss: model.WarmupIndexerLoss, TokenMask: mask})
		short := model.Forward(scope, f.m.Config, graph.Slice(tokens, graph.AxisRange(), graph.AxisRange(0, T/2)),
			graph.Slice(pos, graph.AxisRange(), graph.AxisRange(0, T/2)), nil, model.Options{Dense: true, IndexerLoss: model.WarmupIndexerLoss})
		return []*graph.Node{full.IndexerKL[0], half.IndexerKL[0], short.IndexerKL[0]}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	mask := make([]float32, T)
	for i := range T / 2 {
		mask[i] = 1
	}
	outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(f.ids, 1, T), tensors.FromFlatDataAndDimensions(span(0, T), 1, T),
		tensors.FromFlatDataAndDimensions(mask, 1, T))
	if err != nil {
		t.Fatal(err)
	}
	full, half, short := outs[0].Value().(float32), outs[1].Value().(float32), outs[2].Value().(float32)
	if d := half - short; d > 1e-5 || d < -1e-5 || full <= half {
		t.Errorf("KL with the second half masked %.6f, of the first half alone %.6f, of all %.6f", half, short, full)
	}
}
