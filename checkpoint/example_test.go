package checkpoint_test

import (
	"fmt"
	"log"

	"github.com/dsv32/dsv32/checkpoint"
)

// Open a checkpoint directory and read a weight. The FP8 fixture stores its
// linear weights as F8_E4M3 with 32×32 block scales (from its config.json);
// Float32 dequantises them.
func ExampleOpen() {
	ck, err := checkpoint.Open("../testdata/tiny-dsa-fp8")
	if err != nil {
		log.Fatal(err)
	}
	defer ck.Close()

	const name = "model.layers.0.self_attn.kv_b_proj.weight"
	info, _ := ck.Info(name)
	scale, _ := ck.Info(checkpoint.ScaleName(name))
	fmt.Println(info.DType, info.Shape, "scale", scale.Shape, "block", ck.BlockSize())

	w, shape, err := ck.Float32(name)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(shape, len(w))

	_, _, err = ck.Float32("model.layers.7.mlp.gate.weight")
	fmt.Println(err)
	// Output:
	// F8_E4M3 [128 32] scale [4 1] block [32 32]
	// [128 32] 4096
	// checkpoint ../testdata/tiny-dsa-fp8: tensor "model.layers.7.mlp.gate.weight": not found
}
