package model_test

import (
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// BenchmarkPrefill runs one 64-token prefill of the tiny reference model
// (sparse, index_topk 16) through the cache-carrying Stepper.
func BenchmarkPrefill(b *testing.B) {
	f := loadFixtureB(b)
	st, err := f.m.NewStepper(testutil.Backend(b), 1, 80, model.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	T := len(f.ids)
	pos := span(0, T)
	b.ResetTimer()
	defer reportTokens(b, T)
	for range b.N {
		if _, err := st.Step([][]int32{f.ids}, [][]int32{pos}, []int32{int32(T - 1)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode runs one decode step at position 63 (past index_topk):
// batch 1 and batch 8.
func BenchmarkDecode(b *testing.B) {
	f := loadFixtureB(b)
	for _, batch := range []int{1, 8} {
		b.Run(itoa(batch), func(b *testing.B) {
			st, err := f.m.NewStepper(testutil.Backend(b), batch, 80, model.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			tokens := make([][]int32, batch)
			pos := make([][]int32, batch)
			for i := range tokens {
				tokens[i], pos[i] = []int32{f.ids[i]}, []int32{63}
			}
			last := make([]int32, batch)
			b.ResetTimer()
			defer reportTokens(b, batch)
			for range b.N {
				if _, err := st.Step(tokens, pos, last); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func loadFixtureB(b *testing.B) *fixture { return loadFixture(b, "tiny-dsa", 40) }

// reportTokens adds tokens/s to a benchmark's output.
func reportTokens(b *testing.B, perOp int) {
	b.ReportMetric(float64(perOp)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
