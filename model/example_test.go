package model_test

import (
	"fmt"
	"os"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// A stepper keeps one sequence's caches on the device: prefill the prompt
// (all but its newest token), then decode greedily with Chain, whose steps
// take their input tokens from the device.
func ExampleStepper_Chain() {
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	backend, err := compute.NewWithConfig("go:ops_sequential")
	if err != nil {
		panic(err)
	}
	m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.Float32)
	if err != nil {
		panic(err)
	}
	st, err := m.NewStepper(backend, 1, 32, model.Options{})
	if err != nil {
		panic(err)
	}
	defer st.Close()
	prompt := []int32{5, 17, 42, 7}
	if _, err := st.Step([][]int32{prompt[:3]}, [][]int32{{0, 1, 2}}, []int32{2}); err != nil {
		panic(err)
	}
	ids, err := st.Chain([]int32{prompt[3]}, []int32{3}, 4) // 4 tokens for row 0
	if err != nil {
		panic(err)
	}
	for _, step := range ids {
		fmt.Print(step[0], " ")
	}
	fmt.Println()
	// Output: 108 144 71 24
}
