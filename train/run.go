package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dsv32/dsv32/internal/atomicfile"
	"io"
	"os"
	"path/filepath"

	"github.com/gomlx/compute"
	"github.com/schollz/progressbar/v3"

	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/train/data"
)

// Source yields training rows of SeqLen+1 tokens and can be put back to a
// saved position; *data.Packer and *SFTPacker are Sources.
type Source interface {
	Next() data.Row
	State() data.State
	Seek(data.State) error
}

// Run is one training run: the loop around a Trainer that draws batches,
// evaluates, logs metrics, plots the loss and writes checkpoints.
//
// Files in Out: metrics.jsonl (one Metrics per step, JSON lines),
// loss.png (the loss curve), and the checkpoints step-NNNNNNNN/ (see
// Trainer.Save).
type Run struct {
	Backend compute.Backend
	Model   *model.Model // the initial weights (float32); unused when resuming
	Config  Config       // unused when resuming: the checkpoint's own config continues
	Data    Source       // training rows
	Eval    []data.Row   // held-out rows; nil: no evaluation
	Out     string       // the run's directory
	Resume  string       // a checkpoint, or a run directory (its newest checkpoint); "": start afresh

	// StopAfter ends the loop once this many steps are done, without the
	// run being over (the schedule still runs to Config.Steps): time-boxed
	// jobs, and tests of resuming. 0: run to Config.Steps.
	StopAfter int
	Progress  io.Writer         // the progress bar's terminal; nil: none
	Log       func(Metrics)     // called with every step's metrics (optional)
	Files     []string          // copied into every checkpoint, e.g. the tokenizer.json
	Meta      map[string]string // saved in every checkpoint's state.json (State.Meta)

	failSave func(what string) error // test hook: fails a save between its files
}

// Result is where a run ended.
type Result struct {
	Trainer    *Trainer
	Last       Metrics  // the last step's metrics
	Eval       *Metrics // the last evaluation
	Checkpoint string   // the last checkpoint written
}

// Do runs the loop until Config.Steps (or StopAfter) steps are done or ctx
// is cancelled; on cancellation it saves a checkpoint and returns ctx's error.
func (r *Run) Do(ctx context.Context) (*Result, error) {
	if r.Data == nil || r.Out == "" {
		return nil, errors.New("train: a run needs Data and Out")
	}
	if err := os.MkdirAll(r.Out, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var tr *Trainer
	var err error
	if r.Resume != "" {
		var st State
		if tr, st, err = Restore(r.Backend, r.Resume); err != nil {
			return nil, err
		}
		if err := r.Data.Seek(st.Data); err != nil {
			return nil, fmt.Errorf("train: resume: %w", err)
		}
	} else {
		if r.Model == nil {
			return nil, errors.New("train: a run needs a Model (or Resume)")
		}
		if tr, err = New(r.Backend, r.Model, r.Config); err != nil {
			return nil, err
		}
	}
	res := &Result{Trainer: tr}
	cfg := tr.Config()
	hist, err := readMetrics(filepath.Join(r.Out, "metrics.jsonl"), tr.StepsDone())
	if err != nil {
		return nil, err
	}
	mf, err := openMetrics(filepath.Join(r.Out, "metrics.jsonl"), hist)
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	evalBatches, err := batchesOf(r.Eval, cfg.Batch)
	if err != nil {
		return nil, err
	}

	end := cfg.Steps
	if r.StopAfter > 0 && r.StopAfter < end {
		end = r.StopAfter
	}
	var bar *progressbar.ProgressBar
	if r.Progress != nil && tr.StepsDone() < end {
		bar = progressbar.NewOptions(end,
			progressbar.OptionSetWriter(r.Progress),
			progressbar.OptionSetDescription(string(cfg.Stage)),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200e6),
		)
		bar.Set(tr.StepsDone())
	}
	saved := -1
	if r.Resume != "" {
		saved = tr.StepsDone() // the checkpoint resumed from
	}
	save := func() error {
		if saved == tr.StepsDone() {
			return nil
		}
		p, err := tr.save(r.Out, r.Data.State(), r.Meta, r.Files, r.failSave)
		if err != nil {
			return err
		}
		res.Checkpoint, saved = p, tr.StepsDone()
		return nil
	}
	for tr.StepsDone() < end {
		if err := ctx.Err(); err != nil {
			if serr := save(); serr != nil {
				return res, errors.Join(err, serr)
			}
			return res, err
		}
		micro := make([]Batch, cfg.Accum)
		for i := range micro {
			rows := make([]data.Row, cfg.Batch)
			for k := range rows {
				rows[k] = r.Data.Next()
			}
			if micro[i], err = NewBatch(rows); err != nil {
				return res, err
			}
			if micro[i].T != cfg.SeqLen {
				return res, fmt.Errorf("train: the data gives rows of %d tokens, config seq_len is %d", micro[i].T, cfg.SeqLen)
			}
		}
		met, err := tr.Step(micro)
		if err != nil {
			return res, err
		}
		step := tr.StepsDone()
		if len(evalBatches) > 0 && (step == cfg.Steps || step == end || (cfg.EvalEvery > 0 && step%cfg.EvalEvery == 0)) {
			ev, err := tr.Eval(evalBatches)
			if err != nil {
				return res, err
			}
			met.EvalLoss, met.EvalLM, met.EvalKL = &ev.Loss, &ev.LMLoss, ev.KL
			res.Eval = &ev
		}
		res.Last = met
		hist = append(hist, met)
		if err := writeMetrics(mf, met); err != nil {
			return res, err
		}
		if r.Log != nil {
			r.Log(met)
		}
		if bar != nil {
			bar.Describe(fmt.Sprintf("%s loss %.4f %.0f tok/s", cfg.Stage, met.Loss, met.TokensPerS))
			bar.Set(step)
		}
		if met.EvalLoss != nil {
			if err := plotLoss(filepath.Join(r.Out, "loss.png"), cfg.Stage, hist); err != nil {
				return res, err
			}
		}
		if (cfg.SaveEvery > 0 && step%cfg.SaveEvery == 0) || step == cfg.Steps {
			if err := save(); err != nil {
				return res, err
			}
		}
	}
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(r.Progress)
	}
	if err := plotLoss(filepath.Join(r.Out, "loss.png"), cfg.Stage, hist); err != nil {
		return res, err
	}
	return res, save()
}

// batchesOf cuts rows into batches of up to b rows.
func batchesOf(rows []data.Row, b int) ([]Batch, error) {
	var out []Batch
	for i := 0; i < len(rows); i += b {
		bt, err := NewBatch(rows[i:min(i+b, len(rows))])
		if err != nil {
			return nil, err
		}
		out = append(out, bt)
	}
	return out, nil
}

// readMetrics reads a run's metrics.jsonl, keeping the steps up to upTo
// (a resumed run drops what the interrupted one logged after its last
// checkpoint). A missing file is no history.
func readMetrics(path string, upTo int) ([]Metrics, error) {
	js, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var hist []Metrics
	sc := bufio.NewScanner(bytes.NewReader(js))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var m Metrics
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			break // a line cut short by a kill ends the history
		}
		if m.Step <= upTo {
			hist = append(hist, m)
		}
	}
	return hist, nil
}

// openMetrics rewrites path with hist (atomically) and opens it to append.
func openMetrics(path string, hist []Metrics) (*os.File, error) {
	var buf bytes.Buffer
	for _, m := range hist {
		js, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("train: metrics: %w", err)
		}
		buf.Write(append(js, '\n'))
	}
	if err := atomicfile.Write(path, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("train: metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: metrics: %w", err)
	}
	return f, nil
}

func writeMetrics(f *os.File, m Metrics) error {
	js, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("train: metrics: %w", err)
	}
	if _, err := f.Write(append(js, '\n')); err != nil {
		return fmt.Errorf("train: metrics: %w", err)
	}
	return nil
}
