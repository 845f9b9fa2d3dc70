package train

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// snapshot copies every model weight out as float32.
func snapshot(t *testing.T, m *model.Model) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, v := range m.Config.Vars(false) {
		w, _, err := m.VarFloat32(v.Path)
		if err != nil {
			t.Fatal(err)
		}
		out[v.Path] = w
	}
	return out
}

func changed(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return true
		}
	}
	return false
}

// fitRepeated trains steps steps on one repeated batch and returns the
// first and last metrics and the weights before.
func fitRepeated(t *testing.T, stage Stage, steps int) (first, last Metrics, before, after map[string][]float32) {
	t.Helper()
	m := tinyModel(t)
	cfg := tinyConfig(stage)
	cfg.Steps, cfg.SeqLen = steps, 48 // 48 keys > index_topk 16: attention is really sparse in stage 2
	if stage == DSAWarmup {
		cfg.LR, cfg.MinLR = 1e-2, 1e-3
	}
	tr, err := New(testutil.Backend(t), m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	b, err := NewBatch(randomRows(11, cfg.Batch, cfg.SeqLen, 320))
	if err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, m)
	for i := range steps {
		met, err := tr.Step([]Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = met
		}
		last = met
	}
	return first, last, before, snapshot(t, m)
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

func TestStages(t *testing.T) {
	for _, tc := range []struct {
		stage Stage
		// which weights must change (true) or stay bit-identical (false)
		moves func(path string) bool
	}{
		// the correction bias moves by γ in pretrain and stage 2 (not by
		// gradients); γ is 0 in stage 1 and SFT
		{Pretrain, func(p string) bool { return !strings.Contains(p, "/indexer/") }},
		{DSAWarmup, func(p string) bool { return strings.Contains(p, "/indexer/") }},
		{DSASparse, func(p string) bool { return true }},
		{SFT, func(p string) bool { return !strings.HasSuffix(p, "correction_bias") }},
	} {
		t.Run(string(tc.stage), func(t *testing.T) {
			first, last, before, after := fitRepeated(t, tc.stage, 20)
			nMoved, nKept := 0, 0
			for p, w := range before {
				got := changed(w, after[p])
				if want := tc.moves(p); got != want {
					t.Errorf("%s: changed=%v, want %v", p, got, want)
				}
				if got {
					nMoved++
				} else {
					nKept++
				}
			}
			t.Logf("%d weights changed, %d bit-identical", nMoved, nKept)
			t.Logf("step 1: loss %.4f lm %.4f kl %s; step 20: loss %.4f lm %.4f kl %s; grad norm %.3g → %.3g",
				first.Loss, first.LMLoss, fmtKL(first.KL), last.Loss, last.LMLoss, fmtKL(last.KL), first.GradNorm, last.GradNorm)
			switch tc.stage {
			case DSAWarmup:
				if k0, k1 := sum(first.KL), sum(last.KL); !(k1 < 0.8*k0) {
					t.Errorf("stage 1 KL %.4f → %.4f: did not decrease by 20%%", k0, k1)
				}
				if first.LMLoss != last.LMLoss {
					t.Errorf("stage 1 changed the LM loss %.6f → %.6f: the main model moved", first.LMLoss, last.LMLoss)
				}
			default:
				if !(last.LMLoss < 0.8*first.LMLoss) {
					t.Errorf("LM loss %.4f → %.4f on a repeated batch: did not fit", first.LMLoss, last.LMLoss)
				}
			}
			if tc.stage == DSASparse || tc.stage == SFT {
				if len(first.KL) != 3 {
					t.Errorf("%d KL values, want one per layer", len(first.KL))
				}
			}
		})
	}
}

func fmtKL(kl []float64) string {
	var parts []string
	for _, k := range kl {
		parts = append(parts, fmt.Sprintf("%.4f", k))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
