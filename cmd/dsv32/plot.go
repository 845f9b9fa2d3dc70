package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotCmd charts one metric from several runs' metrics.jsonl (dsv32 train or
// dsv32 rl) in one PNG: how runs with different seeds or switches compare.
// Runs given under the same label are averaged step by step (seeds).
type plotCmd struct {
	Y      string   `required:"" placeholder:"FIELD" help:"The metric to chart, a JSON field of the lines (a dotted path for nested ones), e.g. held_out_accuracy, reward_mean, eval_loss, off_policy.Masked."`
	X      string   `default:"step" placeholder:"FIELD" help:"The x-axis field."`
	Title  string   `help:"Chart title (default: the metric)."`
	Legend string   `default:"bottom-right" enum:"top-left,top-right,bottom-left,bottom-right" help:"Corner of the legend."`
	Out    string   `required:"" type:"path" placeholder:"FILE.png" help:"Where to write the chart."`
	Runs   []string `arg:"" placeholder:"LABEL=METRICS.jsonl" help:"Runs to chart; repeat a label to average its runs (e.g. seeds)."`
}

func (c *plotCmd) Run() error {
	var order []string
	byLabel := map[string][]map[float64]float64{}
	for _, arg := range c.Runs {
		label, path, ok := strings.Cut(arg, "=")
		if !ok || label == "" || path == "" {
			return fmt.Errorf("plot: run %q: want LABEL=PATH", arg)
		}
		pts, err := readSeries(path, c.X, c.Y)
		if err != nil {
			return err
		}
		if _, seen := byLabel[label]; !seen {
			order = append(order, label)
		}
		byLabel[label] = append(byLabel[label], pts)
	}
	p := plot.New()
	p.Title.Text = c.Title
	if p.Title.Text == "" {
		p.Title.Text = c.Y
	}
	p.X.Label.Text, p.Y.Label.Text = c.X, c.Y
	p.Legend.Top = strings.HasPrefix(c.Legend, "top")
	p.Legend.Left = strings.HasSuffix(c.Legend, "left")
	var args []any
	for _, label := range order {
		runs := byLabel[label]
		xy := meanSeries(runs)
		if len(xy) == 0 {
			return fmt.Errorf("plot: run %q has no line with both %q and %q", label, c.X, c.Y)
		}
		name := label
		if len(runs) > 1 {
			name = fmt.Sprintf("%s (mean of %d)", label, len(runs))
		}
		args = append(args, name, xy)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(c.Out), ".tmp-"+filepath.Base(c.Out))
	if err := p.Save(9*vg.Inch, 5*vg.Inch, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("plot: %w", err)
	}
	return os.Rename(tmp, c.Out)
}

// readSeries reads the (x, y) pairs of a JSON-lines file; lines without both
// fields (an evaluation every few steps) are skipped.
func readSeries(path, x, y string) (map[float64]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	defer f.Close()
	pts := map[float64]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("plot: %s:%d: %w", path, line, err)
		}
		xv, okx := field(m, x)
		yv, oky := field(m, y)
		if okx && oky {
			pts[xv] = yv
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("plot: %s: %w", path, err)
	}
	return pts, nil
}

// field reads a number at a dotted path ("off_policy.Masked").
func field(m map[string]any, path string) (float64, bool) {
	var v any = m
	for key := range strings.SplitSeq(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return 0, false
		}
		v = obj[key]
	}
	f, ok := v.(float64)
	return f, ok
}

// meanSeries averages runs at the x values every run has.
func meanSeries(runs []map[float64]float64) plotter.XYs {
	var xs []float64
	for x := range runs[0] {
		all := true
		for _, r := range runs[1:] {
			if _, ok := r[x]; !ok {
				all = false
				break
			}
		}
		if all {
			xs = append(xs, x)
		}
	}
	slices.Sort(xs)
	xy := make(plotter.XYs, len(xs))
	for i, x := range xs {
		sum := 0.0
		for _, r := range runs {
			sum += r[x]
		}
		xy[i] = plotter.XY{X: x, Y: sum / float64(len(runs))}
	}
	return xy
}
