package model_test

import (
	"slices"
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

// BenchmarkChain decodes 8 greedy tokens per row from position 63 at batch
// 2: a program a step with the host's argmax; Stepper.Chain (tokens stay on
// the device), selecting keys by radix select and by digits; and Chain as
// one device loop, which needs digits (compare it with chain_digits).
func BenchmarkChain(b *testing.B) {
	f := loadFixtureB(b)
	const batch, n = 2, 8
	for _, c := range []struct {
		name string
		opts model.Options
	}{
		{"steps", model.Options{}},
		{"chain", model.Options{}},
		{"chain_digits", model.Options{NativeTopK: true, DigitTopK: true}},
		{"device_loop", model.Options{NativeTopK: true, DigitTopK: true, DeviceLoop: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			st, err := f.m.NewStepper(testutil.Backend(b), batch, 80, c.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			tokens, pos := f.ids[:batch], []int32{63, 63}
			V := f.m.Config.VocabSize
			run := func() error {
				if c.name != "steps" {
					_, err := st.Chain(tokens, pos, n)
					return err
				}
				tok, p := slices.Clone(tokens), slices.Clone(pos)
				for range n {
					res, err := st.Step([][]int32{tok[:1], tok[1:]}, [][]int32{p[:1], p[1:]}, []int32{0, 0})
					if err != nil {
						return err
					}
					tok = []int32{argmax(res.Logits[:V]), argmax(res.Logits[V:])}
					p = []int32{p[0] + 1, p[1] + 1}
				}
				return nil
			}
			if err := run(); err != nil { // compiles
				b.Fatal(err)
			}
			if c.opts.DeviceLoop && st.LoopedSteps() != n {
				b.Fatalf("%d steps ran in device loops, want %d", st.LoopedSteps(), n)
			}
			b.ResetTimer()
			defer reportTokens(b, batch*n)
			for range b.N {
				if err := run(); err != nil {
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
