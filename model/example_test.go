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

// A row's prefix can leave the device and come back: SaveRow copies it to
// the host before the row goes to another sequence, and LoadRow writes it
// into a row (here of another stepper) that then continues from it, as if
// it had prefilled the prompt itself.
func ExampleStepper_SaveRow() {
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	backend, err := compute.NewWithConfig("go:ops_sequential")
	if err != nil {
		panic(err)
	}
	m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.Float32)
	if err != nil {
		panic(err)
	}
	prompt := []int32{5, 17, 42, 7}
	a, err := m.NewStepper(backend, 1, 32, model.Options{})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	if _, err := a.Step([][]int32{prompt[:3]}, [][]int32{{0, 1, 2}}, []int32{2}); err != nil {
		panic(err)
	}
	saved, err := a.SaveRow(0, 3) // positions 0, 1 and 2
	if err != nil {
		panic(err)
	}
	defer saved.Free()
	b, err := m.NewStepper(backend, 2, 64, model.Options{})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	if err := b.LoadRow(1, saved); err != nil {
		panic(err)
	}
	ids, err := b.Chain([]int32{0, prompt[3]}, []int32{0, 3}, 4) // row 1 continues the prompt
	if err != nil {
		panic(err)
	}
	for _, step := range ids {
		fmt.Print(step[1], " ")
	}
	fmt.Println()
	// Output: 108 144 71 24
}
