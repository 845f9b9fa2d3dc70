package env

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/dsv32/dsv32/chat"
)

// BenchmarkGenerateVerify generates one problem per task and scores its
// reference answer with the default ladder reward.
func BenchmarkGenerateVerify(b *testing.B) {
	ctx := context.Background()
	reward := Sum{{Outcome{}, 1}, {Format{}, 0.1}}
	for _, e := range Ladder() {
		task := mustLookup(b, e.Name)
		b.Run(e.Name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				ex := task.Generate(rng, Train)
				c := Completion{Text: "think" + chat.ThinkEnd + ex.Answer + chat.EOS, Thinking: true}
				if r, _, _ := reward.Score(ctx, ex, c); r != 1.1 {
					b.Fatalf("%s: reward %v", ex.Prompt, r)
				}
			}
		})
	}
}
