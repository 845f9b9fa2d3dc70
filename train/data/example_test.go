package data_test

import (
	"fmt"

	"github.com/dsv32/dsv32/train/data"
)

// Two documents, each ending with its EOS (id 1), packed into rows of
// T = 6 inputs with document boundaries kept: the second document does not
// fit after the first, so it starts the next row and the first row is
// padded (id 0). Mask is 0 where a target is padding or starts a segment.
func ExamplePacker() {
	docs := data.Docs{{5, 6, 7, 8, 1}, {9, 9, 1}, {4, 1}}
	p, err := data.NewPacker(docs, data.PackConfig{SeqLen: 6, Mode: data.Boundaries})
	if err != nil {
		panic(err)
	}
	for range 2 {
		r := p.Next()
		fmt.Println("tokens   ", r.Tokens)
		fmt.Println("segments ", r.Segments)
		fmt.Println("positions", r.Positions)
		fmt.Println("mask     ", r.Mask)
		fmt.Printf("state     %+v\n", p.State())
	}
	// Output:
	// tokens    [5 6 7 8 1 0 0]
	// segments  [1 1 1 1 1 0 0]
	// positions [0 1 2 3 4 0 0]
	// mask      [1 1 1 1 0 0]
	// state     {Epoch:0 Index:1 Offset:0}
	// tokens    [9 9 1 4 1 0 0]
	// segments  [1 1 1 2 2 0 0]
	// positions [0 1 2 0 1 0 0]
	// mask      [1 1 0 1 0 0]
	// state     {Epoch:1 Index:0 Offset:0}
}
