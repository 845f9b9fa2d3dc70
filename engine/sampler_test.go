package engine

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// benchLogits are DeepSeek-V3.2-sized logits [129280] shaped like a language
// model's: a few likely tokens over a long flat tail.
func benchLogits(seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, 129280)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 2)
	}
	for range 20 {
		x[r.IntN(len(x))] += 12
	}
	return x
}

// BenchmarkSamplerNext is the host-side cost of one sampled token at the
// full vocabulary: per row and decode step, next to the model's step time.
func BenchmarkSamplerNext(b *testing.B) {
	logits := benchLogits(1)
	for _, c := range []struct {
		name string
		p    SampleParams
	}{
		{"greedy", SampleParams{}},
		{"temperature", SampleParams{Temperature: 1}},
		{"temperature, seeded", SampleParams{Temperature: 1, Seed: 1, HasSeed: true}},
		{"top-p 0.95", SampleParams{Temperature: 1, TopP: 0.95}},
		{"top-k 40 top-p 0.9", SampleParams{Temperature: 0.8, TopK: 40, TopP: 0.9}},
		{"min-p 0.05", SampleParams{Temperature: 1, MinP: 0.05}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := newSampler(c.p, true, 1)
			for b.Loop() {
				s.next(logits)
			}
		})
	}
}

// truncateBySorting is the definition truncate must equal: sort the whole
// vocabulary by descending probability (ties: lower id first), then cut.
func truncateBySorting(p SampleParams, lp []float64) []int32 {
	order := make([]int32, len(lp))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(lp[b], lp[a]) })
	keep, ok := p.cut(lp, order, len(lp))
	if !ok {
		panic("the whole vocabulary always decides")
	}
	return order[:keep]
}

func TestTruncateMatchesFullSort(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	shapes := map[string]func(i int) float32{
		"peaked":   func(i int) float32 { return float32(r.NormFloat64()*2) + float32(12*btoi(r.IntN(500) == 0)) },
		"flat":     func(i int) float32 { return float32(r.NormFloat64() * 0.01) },
		"ties":     func(i int) float32 { return float32(r.IntN(4)) },
		"one-hot":  func(i int) float32 { return float32(40 * btoi(i == 17)) },
		"wide":     func(i int) float32 { return float32(r.NormFloat64() * 30) },
		"all-same": func(i int) float32 { return 1 },
	}
	params := []SampleParams{
		{Temperature: 1, TopP: 0.95}, {Temperature: 1, TopP: 0.5}, {Temperature: 1, TopP: 0.999999},
		{Temperature: 1, TopK: 1}, {Temperature: 1, TopK: 40}, {Temperature: 1, TopK: 5000},
		{Temperature: 1, MinP: 0.05}, {Temperature: 1, MinP: 1e-9}, {Temperature: 1, MinP: 1},
		{Temperature: 0.7, TopK: 40, TopP: 0.9}, {Temperature: 1, TopK: 100, MinP: 0.01, TopP: 0.99},
	}
	for name, f := range shapes {
		x := make([]float32, 3000)
		for i := range x {
			x[i] = f(i)
		}
		for _, p := range params {
			lp := logSoftmax(nil, x, p.Temperature)
			s := newSampler(p, true, 1)
			got, want := slices.Clone(s.truncate(lp)), truncateBySorting(p, lp)
			if !slices.Equal(got, want) {
				t.Errorf("%s, %+v: kept %d tokens, want %d (first %v, want %v)", name, p, len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NaN logits are the model's fault, not the sampler's: it must still return
// a token of the vocabulary rather than panic.
func TestSamplerSurvivesNaN(t *testing.T) {
	x := benchLogits(3)[:5000]
	x[10] = float32(math.NaN())
	for _, p := range []SampleParams{{Temperature: 1, TopP: 0.9}, {Temperature: 1, MinP: 0.1}, {Temperature: 1, TopK: 5}} {
		if tok := newSampler(p, true, 1).next(x); tok.ID < 0 || int(tok.ID) >= len(x) {
			t.Errorf("%+v: token %d", p, tok.ID)
		}
	}
}
