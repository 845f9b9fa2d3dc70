// Package testutil holds small helpers shared by the project's tests:
// locating testdata, numeric comparisons reported as numbers, and the Go
// backend for graph tests.
package testutil

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // the CPU backend for tests
)

// Testdata returns the path of name inside the repository's testdata/.
func Testdata(name ...string) string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "testdata")
	return filepath.Join(append([]string{root}, name...)...)
}

var (
	backendOnce sync.Once
	backend     compute.Backend
	backendErr  error
)

// Backend returns the process's one Go backend (tensors are bound to the
// backend that first used them; tests never download anything).
func Backend(t testing.TB) compute.Backend {
	t.Helper()
	backendOnce.Do(func() {
		os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
		backend, backendErr = compute.NewWithConfig(goBackendConfig)
	})
	if backendErr != nil {
		t.Fatalf("go backend: %v", backendErr)
	}
	return backend
}

// RelErr is ‖got−want‖/‖want‖, and MaxAbs the largest |got−want|.
func RelErr(got, want []float32) (rel, maxAbs float64) {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
		maxAbs = math.Max(maxAbs, math.Abs(d))
	}
	if den == 0 {
		return math.Sqrt(num), maxAbs
	}
	return math.Sqrt(num / den), maxAbs
}

// goBackendConfig runs graph ops one after another (each op still uses every
// core): GoMLX v0.28.2's Go backend can deadlock when parallel ops run sorts
// (TopK) whose comparators wait for the same worker pool.
const goBackendConfig = "go:ops_sequential"
