package engine_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/dsv32/dsv32/engine"
)

// BenchmarkNextTurn times a conversation's next turn: 10 new tokens after a
// 320-token history and a 3-token answer, the first new token only (what
// prefix reuse saves is prefill), with the history taken from the cache and
// prefilled again; and, with one row that another conversation took
// meanwhile ("row taken"), with the history taken back from the host
// (Config.PrefixStore) and prefilled again.
func BenchmarkNextTurn(b *testing.B) {
	for _, c := range []struct {
		name  string
		cfg   engine.Config
		taken bool
	}{
		{"reuse", engine.Config{}, false},
		{"prefill", engine.Config{PrefixReuse: -1}, false},
		{"row taken/store", engine.Config{MaxBatch: 1}, true},
		{"row taken/prefill", engine.Config{MaxBatch: 1, PrefixStore: -1}, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			e, fx := newEngine(b, c.cfg)
			var history []int32
			for range 5 {
				history = append(history, fx...)
			}
			gen := func(prompt []int32, n int) *engine.Result {
				res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, Params: engine.SampleParams{MaxTokens: n}}, nil)
				if err != nil {
					b.Fatal(err)
				}
				return res
			}
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				first := gen(append(slices.Clone(history), int32(i%64)), 3) // a history of its own each time
				if c.taken {
					gen(fx[i%32:i%32+20], 1) // another conversation takes the row
				}
				next := append(append(slices.Clone(history), int32(i%64)), ids(first.Tokens)...)
				next = append(next, fx[:10]...)
				b.StartTimer()
				gen(next, 1)
			}
		})
	}
}

// BenchmarkGroup runs a GRPO-style group: 8 samples of one 320-token prompt
// submitted together, 4 tokens each, with the prompt prefilled once and
// prefilled by every sample.
func BenchmarkGroup(b *testing.B) {
	for _, c := range []struct {
		name  string
		reuse int
	}{{"reuse", 0}, {"prefill", -1}} {
		b.Run(c.name, func(b *testing.B) {
			e, fx := newEngine(b, engine.Config{MaxBatch: 8, PrefixReuse: c.reuse})
			for i := 0; b.Loop(); i++ {
				prompt := []int32{int32(i % 64)} // a prompt of its own each time
				for range 5 {
					prompt = append(prompt, fx...)
				}
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						if _, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, RecordRoutes: true,
							Params: engine.SampleParams{MaxTokens: 4, Temperature: 1, Seed: 1, HasSeed: true}}, nil); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
		})
	}
}
