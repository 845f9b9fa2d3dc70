package checkpoint

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkFloat32 decodes one large tensor per dtype from a mapped file
// (warm page cache). MB/s counts stored bytes; compare sub-benchmarks with
// each other and across runs, not with a fixed number.
func BenchmarkFloat32(b *testing.B) {
	const rows, cols = 4096, 4096 // 16M elements
	rng := rand.New(rand.NewPCG(1, 1))
	data := make([]float32, rows*cols)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	bf16, err := FromFloat32("w.bf16", []int{rows, cols}, data, BF16)
	if err != nil {
		b.Fatal(err)
	}
	f32, err := FromFloat32("w.f32", []int{rows, cols}, data, F32)
	if err != nil {
		b.Fatal(err)
	}
	w8, s8, err := QuantizeFP8("w.weight", []int{rows, cols}, data, [2]int{128, 128})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "bench.safetensors")
	if err := Write(path, []Tensor{bf16, f32, w8, s8}, nil); err != nil {
		b.Fatal(err)
	}
	ck, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer ck.Close()
	for _, c := range []struct{ name, tensor string }{
		{"BF16", "w.bf16"}, {"FP8", "w.weight"}, {"F32", "w.f32"},
	} {
		b.Run(c.name, func(b *testing.B) {
			info, _ := ck.Info(c.tensor)
			b.SetBytes(info.End - info.Begin)
			for b.Loop() {
				if _, _, err := ck.Float32(c.tensor); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
