// Package testutil holds small helpers shared by the project's tests:
// locating testdata, numeric comparisons reported as numbers, and the Go
// backend for graph tests.
package testutil

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // the CPU backend for tests
)

// Testdata returns the path of name inside the repository's testdata/: next
// to this source file as compiled, or, for a test binary run from a copy of
// the repository elsewhere (the GPU machine), the nearest testdata/ at or
// above the working directory.
func Testdata(name ...string) string {
	return filepath.Join(append([]string{testdataRoot()}, name...)...)
}

var testdataRoot = sync.OnceValue(func() string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "testdata")
	if _, err := os.Stat(root); err == nil {
		return root
	}
	if dir, err := os.Getwd(); err == nil {
		for d := dir; ; d = filepath.Dir(d) {
			if st, err := os.Stat(filepath.Join(d, "testdata", "tiny-dsa")); err == nil && st.IsDir() {
				return filepath.Join(d, "testdata")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return root
})

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
		cfg := goBackendConfig
		if b := os.Getenv("DSV32_TEST_BACKEND"); b != "" {
			cfg = b // e.g. xla:/path/xla_cuda_plugin.so, with a test binary built -tags xla
			if _, set := os.LookupEnv("NVIDIA_TF32_OVERRIDE"); !set {
				// The fixtures are float32 references with top-k margins
				// near 1e-4: cuBLAS's TF32 would move selected keys.
				os.Setenv("NVIDIA_TF32_OVERRIDE", "0")
			}
			if f := os.Getenv("XLA_FLAGS"); !strings.Contains(f, "xla_gpu_enable_triton_gemm") {
				// XLA's Triton GEMMs multiply float32 in TF32 whatever
				// cuBLAS is told (on the H200, relative error 0.02 after one
				// layer, against 7e-7 without them).
				os.Setenv("XLA_FLAGS", strings.TrimSpace(f+" --xla_gpu_enable_triton_gemm=false"))
			}
			if f := os.Getenv("XLA_FLAGS"); !strings.Contains(f, "xla_gpu_autotune_level") {
				// Tests compile many small programs once each: autotuning
				// their kernels costs more than it could save (the engine's
				// tests spent about ten minutes on the H200, mostly compiling).
				os.Setenv("XLA_FLAGS", f+" --xla_gpu_autotune_level=0")
			}
		}
		backend, backendErr = compute.NewWithConfig(cfg)
		if backendErr == nil && cfg == goBackendConfig {
			backend = loops{backend}
		}
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

// Tol is a numeric tolerance for comparisons against the float32 reference:
// tol on the Go backend, 1e-3 on XLA, whose GPU matmuls may round inputs to
// TF32 (issue 2 asks for 1e-3 there).
func Tol(tol float64) float64 {
	if b := os.Getenv("DSV32_TEST_BACKEND"); len(b) >= 3 && b[:3] == "xla" {
		return max(tol, 1e-3)
	}
	return tol
}
