package engine_test

import (
	"math"
	"testing"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/testutil"
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
