package rl

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot draws a run's curves as PNG files in dir: rewards and held-out
// accuracy; the stabilisers' statistics (clip fractions, masked share,
// sampler/trainer mismatch, KL); entropy and response length.
func Plot(dir string, steps []StepMetrics) error {
	type series struct {
		name string
		get  func(StepMetrics) (float64, bool)
	}
	charts := []struct {
		file, title, y string
		lines          []series
	}{
		{"reward.png", "GRPO: reward and held-out accuracy", "", []series{
			{"reward mean", func(m StepMetrics) (float64, bool) { return m.Reward, true }},
			{"held-out accuracy", func(m StepMetrics) (float64, bool) {
				if m.HeldOut == nil {
					return 0, false
				}
				return *m.HeldOut, true
			}},
		}},
		{"stability.png", "GRPO: stabilisers (mini-batch 0)", "fraction / value", []series{
			{"clip low", func(m StepMetrics) (float64, bool) { return m.ClipLow, true }},
			{"clip high", func(m StepMetrics) (float64, bool) { return m.ClipHigh, true }},
			{"masked sequences (OPSM)", func(m StepMetrics) (float64, bool) { return m.Masked, true }},
			{"mean |u − a|", func(m StepMetrics) (float64, bool) { return m.MismatchAbs, true }},
			{"KL (ρ·k3)", func(m StepMetrics) (float64, bool) { return m.KL, true }},
			{"routing mismatch", func(m StepMetrics) (float64, bool) { return m.RoutingMismatch, true }},
			{"sampling-mask mismatch", func(m StepMetrics) (float64, bool) { return m.SamplingMaskMismatch, true }},
			{"clip (mini-batches ≥ 1)", func(m StepMetrics) (float64, bool) {
				if m.OffPolicy == nil {
					return 0, false
				}
				return m.OffPolicy.ClipLow + m.OffPolicy.ClipHigh, true
			}},
			{"masked (mini-batches ≥ 1)", func(m StepMetrics) (float64, bool) {
				if m.OffPolicy == nil {
					return 0, false
				}
				return m.OffPolicy.Masked, true
			}},
		}},
		{"length.png", "GRPO: entropy over the kept set and response length", "", []series{
			{"entropy", func(m StepMetrics) (float64, bool) { return m.Entropy, true }},
			{"response length / 10", func(m StepMetrics) (float64, bool) { return m.Length / 10, true }},
		}},
	}
	for _, c := range charts {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "step"
		p.Y.Label.Text = c.y
		var args []any
		for _, s := range c.lines {
			var xy plotter.XYs
			for _, m := range steps {
				if v, ok := s.get(m); ok {
					xy = append(xy, plotter.XY{X: float64(m.Step), Y: v})
				}
			}
			if len(xy) > 0 {
				args = append(args, s.name, xy)
			}
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return fmt.Errorf("rl: plot %s: %w", c.file, err)
		}
		p.Legend.Top = true
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, dir+"/"+c.file); err != nil {
			return fmt.Errorf("rl: plot %s: %w", c.file, err)
		}
	}
	return nil
}
