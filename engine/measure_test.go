package engine_test

import (
	"math"
	"testing"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// The probe passes each run's output on as the next run's donated input; a
// buffer used after its donation would fail the execution.
func TestMeasureBandwidth(t *testing.T) {
	bw, err := engine.MeasureBandwidth(testutil.Backend(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !(bw > 0) || math.IsInf(bw, 0) {
		t.Fatalf("bandwidth %v bytes/s, want a positive finite rate", bw)
	}
}

func TestMeasurePrefill(t *testing.T) {
	m, _ := tinyModel(t)
	for _, c := range []struct{ n, chunk int }{{40, 16}, {10, 64}} { // a short last chunk; one chunk shorter than asked
		ms, err := engine.MeasurePrefill(m, testutil.Backend(t), c.n, c.chunk, model.Options{})
		if err != nil || !(ms > 0) {
			t.Errorf("prefill %d in chunks of %d: %v ms, %v", c.n, c.chunk, ms, err)
		}
	}
	if _, err := engine.MeasurePrefill(m, testutil.Backend(t), 0, 16, model.Options{}); err == nil {
		t.Error("a prefill of 0 tokens: no error")
	}
}

// Chains timed with and without device loops, greedy and sampled; a chain
// asked to loop that did not would be an error, not a timing.
func TestMeasureChain(t *testing.T) {
	m, _ := tinyModel(t)
	loop := model.Options{NativeTopK: true, DigitTopK: true, DeviceLoop: true}
	for _, c := range []struct {
		name string
		d    model.Draw
		opts model.Options
	}{
		{"greedy", model.Draw{}, model.Options{}},
		{"greedy, device loop", model.Draw{}, loop},
		{"sampled, device loop", model.Draw{Temperature: 1, TopP: 0.9}, loop},
	} {
		got, err := engine.MeasureChain(m, testutil.Backend(t), 2, 5, 3, c.d, c.opts)
		if err != nil || !(got.StepMS > 0) || !(got.FirstMS > 0) {
			t.Errorf("%s: %+v, %v", c.name, got, err)
		}
	}
}
