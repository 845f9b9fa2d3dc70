package train

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/train/data"
	"github.com/gomlx/gomlx/core/tensors"
)

// corpus is a small shuffled document set for the tiny model.
func corpus(t testing.TB, T int, cfg Config) *data.Packer {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	docs := make(data.Docs, 40)
	for i := range docs {
		d := make([]uint32, 5+r.IntN(40))
		for k := range d {
			d[k] = uint32(3 + r.IntN(300))
		}
		docs[i] = append(d, 1) // EOS
	}
	p, err := data.NewPacker(docs, data.PackConfig{SeqLen: T, Mode: data.Boundaries, Shuffle: true, Seed: cfg.Seed})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sameWeights compares every model weight and optimizer moment bit for bit.
func sameWeights(t *testing.T, a, b *Trainer) {
	t.Helper()
	n := 0
	for v := range a.m.Store.IterVariables() {
		if v.Path() == optScope+"/step" {
			continue
		}
		w := b.m.Store.GetVariable(v.Path())
		if w == nil {
			t.Errorf("%s: missing after resume", v.Path())
			continue
		}
		x, _, err := model.TensorFloat32(v.MustValue())
		if err != nil {
			t.Fatal(err)
		}
		y, _, err := model.TensorFloat32(w.MustValue())
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Errorf("%s[%d]: %v uninterrupted, %v resumed", v.Path(), i, x[i], y[i])
				break
			}
		}
		n++
	}
	sa := tensors.MustCopyFlatData[int64](a.m.Store.GetVariable(optScope + "/step").MustValue())[0]
	sb := tensors.MustCopyFlatData[int64](b.m.Store.GetVariable(optScope + "/step").MustValue())[0]
	if sa != sb {
		t.Errorf("optimizer step %d uninterrupted, %d resumed", sa, sb)
	}
	t.Logf("%d variables compared bit for bit", n)
}

func resumeConfig() Config {
	c := tinyConfig(Pretrain)
	c.Steps, c.Accum, c.SaveEvery, c.EvalEvery, c.KeepLast = 6, 2, 3, 3, 2
	return c
}

// TestResumeBitExact: k steps, save, resume, train to n equals n steps
// straight through — every weight, moment and bias bit for bit — with
// gradient accumulation, the balance loss and the bias update all on.
func TestResumeBitExact(t *testing.T) {
	be := testutil.Backend(t)
	cfg := resumeConfig()
	eval := randomRows(9, 2, cfg.SeqLen, 320)

	full := &Run{Backend: be, Model: tinyModel(t), Config: cfg, Data: corpus(t, cfg.SeqLen, cfg), Eval: eval, Out: t.TempDir()}
	resFull, err := full.Do(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	first := &Run{Backend: be, Model: tinyModel(t), Config: cfg, Data: corpus(t, cfg.SeqLen, cfg), Eval: eval, Out: out, StopAfter: 3}
	if _, err := first.Do(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "step-00000003", StateFile)); err != nil {
		t.Fatalf("no checkpoint after 3 steps: %v", err)
	}
	second := &Run{Backend: be, Data: corpus(t, cfg.SeqLen, cfg), Eval: eval, Out: out, Resume: out}
	resRes, err := second.Do(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := resRes.Trainer.StepsDone(); got != cfg.Steps {
		t.Fatalf("resumed run ended at step %d, want %d", got, cfg.Steps)
	}
	sameWeights(t, resFull.Trainer, resRes.Trainer)
	if resFull.Last.Loss != resRes.Last.Loss || resFull.Eval.Loss != resRes.Eval.Loss {
		t.Errorf("last loss %v / eval %v uninterrupted, %v / %v resumed", resFull.Last.Loss, resFull.Eval.Loss, resRes.Last.Loss, resRes.Eval.Loss)
	}
	hist, err := readMetrics(filepath.Join(out, "metrics.jsonl"), 1<<30)
	if err != nil || len(hist) != cfg.Steps {
		t.Errorf("metrics.jsonl has %d steps (%v), want %d", len(hist), err, cfg.Steps)
	}
	for _, f := range []string{"loss.png", "step-00000006/model.safetensors", "step-00000006/optimizer.safetensors", "step-00000006/config.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "step-00000003")); err != nil {
		t.Errorf("keep_last 2 should keep step 3: %v", err)
	}
}

// TestKillWhileSaving: a save that fails half-way (after the weights,
// before the optimizer state) leaves the previous checkpoint intact and
// loadable, and resuming from the run directory continues from it.
func TestKillWhileSaving(t *testing.T) {
	be := testutil.Backend(t)
	cfg := resumeConfig()
	cfg.Accum, cfg.SaveEvery, cfg.Steps = 1, 2, 4
	out := t.TempDir()
	injected := errors.New("injected failure: killed while saving")
	run := &Run{Backend: be, Model: tinyModel(t), Config: cfg, Data: corpus(t, cfg.SeqLen, cfg), Out: out,
		failSave: func(what string) error {
			if what == "model" && len(mustList(t, out)) == 1 {
				return injected
			}
			return nil
		}}
	_, err := run.Do(context.Background())
	if !errors.Is(err, injected) {
		t.Fatalf("run error %v, want the injected failure", err)
	}
	if steps := mustList(t, out); len(steps) != 1 || steps[0] != 2 {
		t.Fatalf("checkpoints %v after the failed save, want [2]", steps)
	}
	if _, err := os.Stat(filepath.Join(out, "step-00000004")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("step-00000004 exists after a failed save: %v", err)
	}
	latest, err := Latest(out)
	if err != nil || filepath.Base(latest) != "step-00000002" {
		t.Fatalf("Latest = %s, %v; want step-00000002", latest, err)
	}
	// A kill (not an error return) would leave the temporary directory
	// behind: make one, half-written, and check it is ignored and removed.
	stale := filepath.Join(out, ".tmp-step-00000004")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "model.safetensors"), []byte("half"), 0o644)
	tr, st, err := Restore(be, out)
	if err != nil {
		t.Fatalf("previous checkpoint does not load: %v", err)
	}
	if st.Step != 2 || tr.StepsDone() != 2 {
		t.Fatalf("restored step %d / %d, want 2", st.Step, tr.StepsDone())
	}
	tr.Finalize()
	again := &Run{Backend: be, Data: corpus(t, cfg.SeqLen, cfg), Out: out, Resume: out}
	res, err := again.Do(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Trainer.StepsDone() != 4 || filepath.Base(res.Checkpoint) != "step-00000004" {
		t.Errorf("resumed run ended at %d with %s", res.Trainer.StepsDone(), res.Checkpoint)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary directory left: %v", err)
	}
}

func mustList(t *testing.T, out string) []int {
	steps, err := listCheckpoints(out)
	if err != nil {
		t.Fatal(err)
	}
	return steps
}
