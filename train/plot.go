package train

import (
	"fmt"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotLoss draws the training loss per step and the evaluation loss where
// it was measured, as a PNG written to a temporary name and renamed.
func plotLoss(path string, stage Stage, hist []Metrics) error {
	var train, eval plotter.XYs
	for _, m := range hist {
		train = append(train, plotter.XY{X: float64(m.Step), Y: m.Loss})
		if m.EvalLoss != nil {
			eval = append(eval, plotter.XY{X: float64(m.Step), Y: *m.EvalLoss})
		}
	}
	if len(train) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("dsv32 train: %s", stage)
	p.X.Label.Text = "step"
	p.Y.Label.Text = "loss"
	p.Legend.Top = true
	args := []any{"train", train}
	if len(eval) > 0 {
		args = append(args, "eval", eval)
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return fmt.Errorf("train: plot: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := p.Save(8*vg.Inch, 4*vg.Inch, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("train: plot: %w", err)
	}
	return os.Rename(tmp, path)
}
