package train

import (
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
)

// BenchmarkStep is one optimizer step of each stage on the tiny model
// (B=2, T=64), on the Go backend; tokens/s is reported per stage.
func BenchmarkStep(b *testing.B) {
	for _, stage := range Stages {
		b.Run(string(stage), func(b *testing.B) {
			cfg := tinyConfig(stage)
			cfg.SeqLen, cfg.Steps = 64, 1<<30
			tr, err := New(testutil.Backend(b), tinyModel(b), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Finalize()
			batch, _ := NewBatch(randomRows(1, cfg.Batch, cfg.SeqLen, 320))
			if _, err := tr.Step([]Batch{batch}); err != nil { // compile
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := tr.Step([]Batch{batch}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*cfg.Batch*cfg.SeqLen)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
