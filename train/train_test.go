package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/train/data"
	"github.com/gomlx/compute/dtypes"
)

// tinyModel loads the tiny-dsa fixture (vocab 320, index_topk 16) in float32.
func tinyModel(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// randomRows makes n Concat-style rows of T+1 random tokens in [3, V).
func randomRows(seed uint64, n, T, V int) []data.Row {
	r := rand.New(rand.NewPCG(seed, 7))
	rows := make([]data.Row, n)
	for i := range rows {
		row := data.Row{Tokens: make([]int32, T+1), Segments: make([]int32, T+1), Positions: make([]int32, T+1), Mask: make([]float32, T)}
		for k := range row.Tokens {
			row.Tokens[k] = int32(3 + r.IntN(V-3))
			row.Segments[k] = 1
			row.Positions[k] = int32(k)
		}
		for k := range row.Mask {
			row.Mask[k] = 1
		}
		rows[i] = row
	}
	return rows
}

func tinyConfig(stage Stage) Config {
	c := DefaultConfig(stage)
	c.Steps, c.Batch, c.SeqLen, c.Warmup = 20, 2, 32, 2
	c.LR, c.MinLR = 3e-3, 3e-4
	return c
}

func TestStepRuns(t *testing.T) {
	m := tinyModel(t)
	cfg := tinyConfig(Pretrain)
	tr, err := New(testutil.Backend(t), m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	b, err := NewBatch(randomRows(1, 2, 32, 320))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		met, err := tr.Step([]Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", met)
	}
}

// TestAccumulation: two micro-batches of one row each, accumulated, take
// the same step as one batch of both rows — also when the loss mask counts
// 32 targets in one row and 5 in the other (token weighting; SFT rows).
func TestAccumulation(t *testing.T) {
	for _, uneven := range []bool{false, true} {
		rows := randomRows(5, 2, 32, 320)
		if uneven {
			for k := 5; k < 32; k++ {
				rows[1].Mask[k] = 0
			}
		}
		t.Run(fmt.Sprintf("uneven=%v", uneven), func(t *testing.T) { testAccumulation(t, rows) })
	}
}

func testAccumulation(t *testing.T, rows []data.Row) {
	weights := func(accum int) map[string][]float32 {
		m := tinyModel(t)
		cfg := tinyConfig(DSASparse)
		cfg.Accum, cfg.Batch = accum, 2/accum
		tr, err := New(testutil.Backend(t), m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Finalize()
		var micro []Batch
		for i := range accum {
			b, err := NewBatch(rows[i*cfg.Batch : (i+1)*cfg.Batch])
			if err != nil {
				t.Fatal(err)
			}
			micro = append(micro, b)
		}
		for range 2 {
			if _, err := tr.Step(micro); err != nil {
				t.Fatal(err)
			}
		}
		return snapshot(t, m)
	}
	one, two := weights(1), weights(2)
	worst := 0.0
	for p, w := range one {
		rel, _ := testutil.RelErr(two[p], w)
		worst = max(worst, rel)
		if rel > 1e-4 {
			t.Errorf("%s: accumulated step differs from the full batch's, relative error %.3g", p, rel)
		}
	}
	t.Logf("worst relative difference over %d weights after 2 steps: %.3g", len(one), worst)
}

// TestAdamWFirstStep: without clipping and decay, AdamW's first step moves
// every weight by lr·g/(|g|+ε), ≈ lr wherever the gradient is not tiny.
func TestAdamWFirstStep(t *testing.T) {
	m := tinyModel(t)
	cfg := tinyConfig(Pretrain)
	cfg.Clip, cfg.Decay, cfg.Alpha, cfg.Gamma, cfg.Warmup = 0, 0, 0, 0, 0
	tr, err := New(testutil.Backend(t), m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	before := snapshot(t, m)
	b, _ := NewBatch(randomRows(2, 2, 32, 320))
	met, err := tr.Step([]Batch{b})
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, m)
	lr := float32(met.LR)
	n, near := 0, 0
	for p, w := range before {
		for i := range w {
			d := after[p][i] - w[i]
			if d < 0 {
				d = -d
			}
			if d > lr*(1+1e-3) {
				t.Fatalf("%s[%d] moved by %g > lr %g", p, i, d, lr)
			}
			if d > 0 {
				n++
				if d > lr*0.99 {
					near++
				}
			}
		}
	}
	if float64(near) < 0.9*float64(n) {
		t.Errorf("only %d of %d moved weights moved by ≈ lr", near, n)
	}
	t.Logf("%d weights moved, %d by lr within 1%%", n, near)
}

func TestSchedule(t *testing.T) {
	c := Config{LR: 1, MinLR: 0.1, Warmup: 4, Steps: 13}
	for _, tc := range []struct {
		step int
		want float64
	}{{0, 0.25}, {3, 1}, {4, 1}, {8, 0.55}, {12, 0.1}, {20, 0.1}} {
		if got := c.LRAt(tc.step); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("LRAt(%d) = %v, want %v", tc.step, got, tc.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Stage = "rl" }, "unknown stage"},
		{func(c *Config) { c.Batch = 0 }, "batch"},
		{func(c *Config) { c.LR = 0 }, "lr"},
		{func(c *Config) { c.MinLR = 1 }, "min_lr"},
		{func(c *Config) { c.Beta2 = 1 }, "beta2"},
		{func(c *Config) { c.DType = "f16" }, "dtype"},
	} {
		c := DefaultConfig(Pretrain)
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one naming %q", err, tc.want)
		}
	}
	// Bad input to a step is an error, not a panic.
	tr, err := New(testutil.Backend(t), tinyModel(t), tinyConfig(Pretrain))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	rows := randomRows(1, 2, 32, 320)
	rows[1].Tokens[5] = 999
	b, _ := NewBatch(rows)
	if _, err := tr.Step([]Batch{b}); err == nil || !strings.Contains(err.Error(), "vocabulary") {
		t.Errorf("out-of-vocabulary token: error %v", err)
	}
	if _, err := NewBatch([]data.Row{rows[0], {Tokens: []int32{1, 2}}}); err == nil {
		t.Error("ragged batch accepted")
	}
}

// TestBF16Compute: bf16 activations over float32 master weights train, and
// the weights stay float32.
func TestBF16Compute(t *testing.T) {
	m := tinyModel(t)
	cfg := tinyConfig(DSASparse)
	cfg.DType = "bf16"
	tr, err := New(testutil.Backend(t), m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	b, _ := NewBatch(randomRows(4, 2, 32, 320))
	var first, last Metrics
	for i := range 8 {
		met, err := tr.Step([]Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = met
		}
		last = met
	}
	t.Logf("bf16 compute: lm loss %.4f → %.4f", first.LMLoss, last.LMLoss)
	if !(last.LMLoss < first.LMLoss) {
		t.Errorf("bf16 compute: loss %.4f → %.4f", first.LMLoss, last.LMLoss)
	}
	if dt := m.Store.GetVariable("/model/embed_tokens/weight").DType(); dt != dtypes.Float32 {
		t.Errorf("master weights became %s", dt)
	}
}
