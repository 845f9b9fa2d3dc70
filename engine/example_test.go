package engine_test

import (
	"context"
	"fmt"
	"os"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// An engine serves generations from one model. A conversation's next turn
// begins with its history, which the engine finds in the caches (here
// kept on the host by the prefix store, since another conversation took
// the only row in between): only the new tokens are prefilled.
func ExampleEngine_Generate() {
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	backend, err := compute.NewWithConfig("go:ops_sequential")
	if err != nil {
		panic(err)
	}
	m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.Float32)
	if err != nil {
		panic(err)
	}
	e, err := engine.New(m, backend, engine.Config{MaxBatch: 1})
	if err != nil {
		panic(err)
	}
	defer e.Close()
	generate := func(prompt []int32) *engine.Result {
		res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, Params: engine.SampleParams{MaxTokens: 4}}, nil)
		if err != nil {
			panic(err)
		}
		return res
	}
	history := []int32{5, 17, 42, 7, 9, 11, 13, 2, 3, 8, 21, 34, 55, 89, 14, 33, 70, 12, 6, 4}
	first := generate(history)
	generate([]int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}) // another conversation
	for _, t := range first.Tokens {
		history = append(history, t.ID)
	}
	next := generate(append(history, 99, 100))
	fmt.Println("first turn:", ids(first.Tokens))
	fmt.Println("next turn:", ids(next.Tokens), "prompt", next.PromptTokens, "tokens, of which cached", next.CachedTokens)
	// Output:
	// first turn: [171 171 171 171]
	// next turn: [18 22 10 292] prompt 26 tokens, of which cached 23
}
