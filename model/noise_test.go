package model_test

import (
	"math"
	"testing"

	"github.com/dsv32/dsv32/model"
)

// TestSeededGumbel: the seeded noise is standard Gumbel (mean γ, variance
// π²/6) over ids, draws and keys, never above MaxSeededGumbel, and a
// different key or draw index gives different noise.
func TestSeededGumbel(t *testing.T) {
	const n = 1 << 20
	var sum, sq float64
	hi := float32(math.Inf(-1))
	for i := range n {
		key := model.SeedKey(uint64(i / 4096))
		g := float64(model.SeededGumbel(key, uint32(i%7), int32(i%4096)))
		sum += g
		sq += g * g
		hi = max(hi, float32(g))
	}
	mean := sum / n
	variance := sq/n - mean*mean
	if math.Abs(mean-0.5772157) > 0.01 || math.Abs(variance-math.Pi*math.Pi/6) > 0.02 {
		t.Errorf("mean %.4f, variance %.4f; standard Gumbel: 0.5772, %.4f", mean, variance, math.Pi*math.Pi/6)
	}
	if hi > model.MaxSeededGumbel {
		t.Errorf("noise %g above MaxSeededGumbel %g", hi, model.MaxSeededGumbel)
	}
	if top := -math.Log(-math.Log(1 - 1.0/(1<<25))); top > model.MaxSeededGumbel {
		t.Errorf("the largest uniform gives %g, above MaxSeededGumbel", top)
	}
	a := model.SeededGumbel(model.SeedKey(1), 0, 5)
	if a == model.SeededGumbel(model.SeedKey(2), 0, 5) || a == model.SeededGumbel(model.SeedKey(1), 1, 5) {
		t.Error("another key or draw gives the same noise")
	}
}
