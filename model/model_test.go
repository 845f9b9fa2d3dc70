package model_test

import (
	"testing"

	"github.com/dsv32/dsv32/checkpoint"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
)

// fixture is one reference checkpoint with transformers' outputs.
type fixture struct {
	name   string
	m      *model.Model
	exp    *checkpoint.Checkpoint
	ids    []int32
	prefix int
}

func loadFixture(t testing.TB, name string, prefix int) *fixture {
	t.Helper()
	dir := testutil.Testdata(name)
	m, err := model.Load(dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := checkpoint.Open(dir + "/expected.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exp.Close() })
	ids64, _, err := exp.Int64("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, len(ids64))
	for i, v := range ids64 {
		ids[i] = int32(v)
	}
	return &fixture{name: name, m: m, exp: exp, ids: ids, prefix: prefix}
}

func (f *fixture) tensor(t testing.TB, name string) []float32 {
	t.Helper()
	v, _, err := f.exp.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var fixtures = []struct {
	name   string
	prefix int // decode_prefix of meta.json
}{
	{"tiny-dsa", 40},
	{"tiny-dsa-yarn", 50},
}

func TestPrefillMatchesReference(t *testing.T) {
	backend := testutil.Backend(t)
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			f := loadFixture(t, fx.name, fx.prefix)
			res, err := f.m.RunPrefill(backend, f.ids, model.Options{CaptureHidden: true})
			if err != nil {
				t.Fatal(err)
			}
			// Layer by layer first, so a failure says where the port diverged.
			for i, h := range res.Hidden {
				rel, maxAbs := testutil.RelErr(h, f.tensor(t, "hidden_"+itoa(i)))
				t.Logf("hidden_%d: rel %.3g, max abs %.3g", i, rel, maxAbs)
				if rel > testutil.Tol(1e-4) {
					t.Fatalf("hidden_%d: relative error %.3g > tolerance (max abs %.3g)", i, rel, maxAbs)
				}
			}
			rel, maxAbs := testutil.RelErr(res.Logits, f.tensor(t, "logits"))
			t.Logf("logits: rel %.3g, max abs %.3g", rel, maxAbs)
			if rel > testutil.Tol(1e-4) {
				t.Errorf("logits: relative error %.3g > tolerance", rel)
			}
			checkTopK(t, f, res)
		})
	}
}

// checkTopK compares each layer's selection with the reference as sets,
// after removing masked future positions (dsa.md §4.4).
func checkTopK(t *testing.T, f *fixture, res *model.Prefill) {
	t.Helper()
	T := len(f.ids)
	for l, got := range res.TopK {
		want, shape, err := f.exp.Int64("topk_" + itoa(l))
		if err != nil {
			t.Fatal(err)
		}
		k := shape[1]
		if k != res.K {
			t.Fatalf("layer %d: top-k width %d, reference %d", l, res.K, k)
		}
		checked := 0
		for row := range T {
			a, b := map[int]bool{}, map[int]bool{}
			for j := range k {
				if s := int(got[row*k+j]); s <= row {
					a[s] = true
				}
				if s := int(want[row*k+j]); s <= row {
					b[s] = true
				}
			}
			if len(a) != len(b) {
				t.Fatalf("layer %d row %d: %d causal keys selected, reference %d", l, row, len(a), len(b))
			}
			for s := range b {
				if !a[s] {
					t.Fatalf("layer %d row %d: key %d selected by the reference, not by us", l, row, s)
				}
			}
			if row+1 > k {
				checked++
			}
		}
		if checked == 0 {
			t.Fatalf("layer %d: no row has more than k=%d causal keys, so selection was never exercised", l, k)
		}
	}
	if len(res.TopK) != f.m.Config.NumHiddenLayers {
		t.Fatalf("got top-k for %d layers, want %d", len(res.TopK), f.m.Config.NumHiddenLayers)
	}
}

func TestDenseMatchesReference(t *testing.T) {
	backend := testutil.Backend(t)
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			f := loadFixture(t, fx.name, fx.prefix)
			res, err := f.m.RunPrefill(backend, f.ids, model.Options{Dense: true})
			if err != nil {
				t.Fatal(err)
			}
			rel, maxAbs := testutil.RelErr(res.Logits, f.tensor(t, "dense_logits"))
			t.Logf("dense_logits: rel %.3g, max abs %.3g", rel, maxAbs)
			if rel > testutil.Tol(1e-4) {
				t.Errorf("dense_logits: relative error %.3g > tolerance", rel)
			}
			// Sparse and dense must differ on these fixtures, or the test proves nothing.
			sparse := f.tensor(t, "logits")
			if r, _ := testutil.RelErr(res.Logits, sparse); r < 1e-2 {
				t.Errorf("dense and sparse logits agree (rel %.3g): top-k is not active", r)
			}
		})
	}
}

// TestStepRoutesLifetime: a step's routed expert ids stay on the device until
// asked for, and the next step frees them (so the device allocator sees the
// same requests every step); asking too late panics rather than returning
// wrong or missing routes.
func TestStepRoutesLifetime(t *testing.T) {
	f := loadFixture(t, fixtures[0].name, fixtures[0].prefix)
	st, err := f.m.NewStepper(testutil.Backend(t), 1, 8, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first, err := st.Step([][]int32{f.ids[:3]}, [][]int32{span(0, 3)}, []int32{2})
	if err != nil {
		t.Fatal(err)
	}
	routes := first.Routes()
	if want := f.m.Config.NumMoELayers(); len(routes) != want {
		t.Fatalf("%d route layers, want %d", len(routes), want)
	}
	if want := 3 * f.m.Config.NumExpertsPerTok; len(routes[0]) != want {
		t.Fatalf("%d routed ids in layer 0, want %d (3 tokens × K)", len(routes[0]), want)
	}
	second, err := st.Step([][]int32{f.ids[3:4]}, [][]int32{span(3, 4)}, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	if again := first.Routes(); len(again) != len(routes) { // copied before the second step: still there
		t.Fatalf("first step's routes changed after the next step: %d layers", len(again))
	}
	third, err := st.Step([][]int32{f.ids[4:5]}, [][]int32{span(4, 5)}, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	_ = third
	defer func() {
		if recover() == nil {
			t.Error("Routes of a step two steps back did not panic")
		}
	}()
	second.Routes()
}

func TestCachedDecodeMatchesReference(t *testing.T) {
	backend := testutil.Backend(t)
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			f := loadFixture(t, fx.name, fx.prefix)
			T, P, V := len(f.ids), f.prefix, f.m.Config.VocabSize
			want := f.tensor(t, "decode_logits")
			check := func(what string, got []float32) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: decoded %d logits, reference has %d", what, len(got), len(want))
				}
				rel, maxAbs := testutil.RelErr(got, want)
				t.Logf("%s: decode_logits rel %.3g, max abs %.3g", what, rel, maxAbs)
				if rel > testutil.Tol(1e-4) {
					t.Errorf("%s: decode_logits relative error %.3g > tolerance", what, rel)
				}
			}

			// One row: prefill the prefix in one step, then one token at a
			// time; with each way of selecting the indexer's keys.
			for _, sel := range []struct {
				name string
				opts model.Options
			}{
				{"one row", model.Options{}},
				{"one row, digit top-k", model.Options{NativeTopK: true, DigitTopK: true}},
			} {
				st, err := f.m.NewStepper(backend, 1, T, sel.opts)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				res, err := st.Step([][]int32{f.ids[:P]}, [][]int32{span(0, P)}, []int32{int32(P - 1)})
				if err != nil {
					t.Fatal(err)
				}
				got := res.Logits
				for j := P; j < T-1; j++ {
					res, err := st.Step([][]int32{f.ids[j : j+1]}, [][]int32{span(j, j+1)}, []int32{0})
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, res.Logits...)
				}
				check(sel.name, got)
			}

			// Two rows: row 1 prefills alone in chunks of 7 into a cache that
			// starts too small and grows; row 0 gets the same prompt at once;
			// then both decode together; then row 1 is copied over row 0.
			st2, err := f.m.NewStepper(backend, 2, 16, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			if err := st2.Resize(2, T); err != nil {
				t.Fatal(err)
			}
			var last1 []float32
			for c := 0; c < P; c += 7 {
				end := min(c+7, P)
				r, err := st2.StepRow(1, f.ids[c:end], span(c, end), int32(end-c-1))
				if err != nil {
					t.Fatal(err)
				}
				last1 = r.Logits
			}
			r0, err := st2.StepRow(0, f.ids[:P], span(0, P), int32(P-1))
			if err != nil {
				t.Fatal(err)
			}
			rows := [2][]float32{r0.Logits, last1}
			for j := P; j < T-1; j++ {
				if j == P+5 {
					if err := st2.CopyRow(1, 0); err != nil {
						t.Fatal(err)
					}
				}
				tok := []int32{f.ids[j]}
				r, err := st2.Step([][]int32{tok, tok}, [][]int32{span(j, j+1), span(j, j+1)}, []int32{0, 0})
				if err != nil {
					t.Fatal(err)
				}
				rows[0] = append(rows[0], r.Logits[:V]...)
				rows[1] = append(rows[1], r.Logits[V:]...)
			}
			check("batch row 0", rows[0])
			check("batch row 1 (chunked prefill)", rows[1])
		})
	}
}

// TestRowWritesMatchScatter decodes three rows at different positions with
// Options.RowWrites (a DynamicUpdateSlice per row) and without (one scatter
// for the batch): the logits must agree. Backends without
// DynamicUpdateSlice (the Go backend) have no row writes to check.
func TestRowWritesMatchScatter(t *testing.T) {
	backend := testutil.Backend(t)
	if !backend.Capabilities().Operations[compute.OpTypeDynamicUpdateSlice] {
		t.Skip("no DynamicUpdateSlice on this backend, so Options.RowWrites does not apply")
	}
	f := loadFixture(t, "tiny-dsa", 40)
	prompts := []int{40, 33, 45} // each row's prompt length, so the rows decode at different positions
	const steps = 4
	run := func(opts model.Options) []float32 {
		st, err := f.m.NewStepper(backend, len(prompts), 64, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for b, n := range prompts {
			if _, err := st.StepRow(b, f.ids[:n], span(0, n), int32(n-1)); err != nil {
				t.Fatal(err)
			}
		}
		var logits []float32
		for j := range steps {
			tokens, pos := make([][]int32, len(prompts)), make([][]int32, len(prompts))
			for b, n := range prompts {
				tokens[b], pos[b] = f.ids[n+j:n+j+1], span(n+j, n+j+1)
			}
			r, err := st.Step(tokens, pos, make([]int32, len(prompts)))
			if err != nil {
				t.Fatal(err)
			}
			logits = append(logits, r.Logits...)
		}
		return logits
	}
	want, got := run(model.Options{}), run(model.Options{RowWrites: true})
	rel, maxAbs := testutil.RelErr(got, want)
	t.Logf("row writes against one scatter: rel %.3g, max abs %.3g", rel, maxAbs)
	if rel > 1e-6 {
		t.Errorf("row writes change the logits: relative error %.3g", rel)
	}
}

func span(from, to int) []int32 {
	p := make([]int32, 0, to-from)
	for i := from; i < to; i++ {
		p = append(p, int32(i))
	}
	return p
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// TestFP8MatchesReference loads DeepSeek's FP8 checkpoint format (F8_E4M3
// weights with [32, 32] block scales) and matches transformers run on the
// dequantised weights.
func TestFP8MatchesReference(t *testing.T) {
	f := loadFixture(t, "tiny-dsa-fp8", 0)
	if f.m.Config.Quantization == nil || f.m.Config.Quantization.WeightBlockSize[0] != 32 {
		t.Fatalf("quantization_config not read: %+v", f.m.Config.Quantization)
	}
	res, err := f.m.RunPrefill(testutil.Backend(t), f.ids, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rel, maxAbs := testutil.RelErr(res.Logits, f.tensor(t, "logits"))
	t.Logf("fp8 logits: rel %.3g, max abs %.3g", rel, maxAbs)
	if rel > testutil.Tol(1e-4) {
		t.Errorf("fp8 logits: relative error %.3g > tolerance", rel)
	}
	// The same weights in float32 give different logits (quantisation error
	// ≈ 0.46 relative): the FP8 path is really exercised.
	f32 := loadFixture(t, "tiny-dsa", 40)
	if r, _ := testutil.RelErr(res.Logits, f32.tensor(t, "logits")); r < 1e-2 {
		t.Errorf("fp8 logits equal the float32 model's (rel %.3g): weights were not quantised", r)
	}
}

// TestBF16Weights holds the fixture's weights in bfloat16 and compares with
// the same model in float32, in dense mode (top-k near its margins would flip
// under bf16 rounding and hide everything else): bf16 rounding only.
func TestBF16Weights(t *testing.T) {
	f := loadFixture(t, "tiny-dsa", 40)
	m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.BFloat16)
	if err != nil {
		t.Fatal(err)
	}
	opts := model.Options{Dense: true, CaptureHidden: true}
	got, err := m.RunPrefill(testutil.Backend(t), f.ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	want, err := f.m.RunPrefill(testutil.Backend(t), f.ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got.Hidden {
		rel, _ := testutil.RelErr(got.Hidden[i], want.Hidden[i])
		t.Logf("bf16 vs f32, dense: hidden_%d relative error %.3g", i, rel)
		if i == 1 && rel > 2e-2 {
			t.Errorf("hidden_1 (dense MLP layer) relative error %.3g > 2e-2", rel)
		}
	}
	w, _, err := m.VarFloat32("/lm_head/weight")
	if err != nil || len(w) != 320*64 {
		t.Fatalf("reading a bf16 weight back: %v (%d values)", err, len(w))
	}
}
