package train

import (
	"encoding/json"
	"fmt"
	"github.com/dsv32/dsv32/internal/atomicfile"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/dsv32/dsv32/checkpoint"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/train/data"
)

// Training checkpoints. One checkpoint is a directory OUT/step-NNNNNNNN:
//
//	config.json, model.safetensors  the weights in Hugging Face layout (Model.Save, float32)
//	optimizer.safetensors           AdamW moments m/<var>, v/<var> (float32)
//	state.json                      State: step, data position, seed, the run's Config
//
// It is written into OUT/.tmp-step-NNNNNNNN and renamed into place only when
// every file is complete, so a run killed while saving leaves the previous
// checkpoints as they were (and a stale .tmp- directory that the next save
// removes). Only directories with a state.json count as checkpoints.

// StateFile is the name of a checkpoint's JSON state.
const StateFile = "state.json"

// OptimizerFile is the name of a checkpoint's optimizer state.
const OptimizerFile = "optimizer.safetensors"

// State is a checkpoint's state.json: everything besides the tensors that a
// resumed run needs to continue bit-exactly. The trainer draws no random
// numbers in its graphs (no dropout); the data order is the only random
// thing, a function of Seed and the data position, so these two are the
// run's whole RNG state.
type State struct {
	Format  string     `json:"format"`  // "dsv32-train"
	Version int        `json:"version"` // 1
	Step    int        `json:"step"`    // optimizer steps done
	Data    data.State `json:"data"`    // where the next training row comes from
	Seed    uint64     `json:"seed"`
	Config  Config     `json:"config"`
	// Meta is the caller's (Run.Meta): what it needs to rebuild the same
	// data on resume, such as the held-out fraction and packing mode.
	Meta map[string]string `json:"meta,omitempty"`
}

const stateFormat = "dsv32-train"

func stepDir(out string, step int) string {
	return filepath.Join(out, fmt.Sprintf("step-%08d", step))
}

// Save writes a checkpoint of the trainer after its last step, with the
// data position pos, as out/step-NNNNNNNN (atomically, see above), and
// returns its path.
func (t *Trainer) Save(out string, pos data.State) (string, error) {
	return t.save(out, pos, nil, nil, nil)
}

// save is Save that also copies files (such as the tokenizer.json, so that
// a checkpoint is a model directory the server loads) into the checkpoint,
// and calls hook after each file, for tests that fail a save half-way.
func (t *Trainer) save(out string, pos data.State, meta map[string]string, files []string, hook func(what string) error) (string, error) {
	if hook == nil {
		hook = func(string) error { return nil }
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("train: save: %w", err)
	}
	final := stepDir(out, t.step)
	tmp := filepath.Join(out, ".tmp-"+filepath.Base(final))
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("train: save: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("train: save: %w", err)
	}
	fail := func(err error) (string, error) {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("train: save %s: %w", final, err)
	}
	if err := t.m.Save(tmp, checkpoint.F32); err != nil {
		return fail(err)
	}
	if err := hook("model"); err != nil {
		return fail(err)
	}
	if err := t.saveOptimizer(filepath.Join(tmp, OptimizerFile)); err != nil {
		return fail(err)
	}
	if err := hook("optimizer"); err != nil {
		return fail(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fail(err)
		}
		if err := atomicfile.Write(filepath.Join(tmp, filepath.Base(f)), b); err != nil {
			return fail(err)
		}
	}
	st := State{Format: stateFormat, Version: 1, Step: t.step, Data: pos, Seed: t.cfg.Seed, Config: t.cfg, Meta: meta}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := atomicfile.Write(filepath.Join(tmp, StateFile), append(js, '\n')); err != nil {
		return fail(err)
	}
	if err := hook("state"); err != nil {
		return fail(err)
	}
	syncDir(tmp)
	// Step directories are unique per step; one that exists already (the
	// same step saved again) is moved aside first and removed after.
	var old string
	if _, err := os.Stat(final); err == nil {
		old = filepath.Join(out, ".old-"+filepath.Base(final))
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		if old != "" {
			os.Rename(old, final)
		}
		return fail(err)
	}
	syncDir(out)
	if old != "" {
		os.RemoveAll(old)
	}
	return final, t.prune(out)
}

// saveOptimizer writes the AdamW moments (every /optimizer variable but
// the step counter, which state.json holds, and the accumulators, which are
// zero between steps) as float32.
func (t *Trainer) saveOptimizer(path string) error {
	var out []checkpoint.Tensor
	for v := range t.m.Store.IterVariables() {
		name, ok := strings.CutPrefix(v.Path(), optScope+"/")
		if !ok || name == "step" || strings.HasPrefix(name, "acc/") {
			continue
		}
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("%s: %w", v.Path(), err)
		}
		ct, err := checkpoint.FromFloat32(name, v.Shape().Dimensions, tensors.MustCopyFlatData[float32](val), checkpoint.F32)
		if err != nil {
			return err
		}
		out = append(out, ct)
	}
	return checkpoint.Write(path, out, map[string]string{"format": stateFormat})
}

// prune removes all but the newest KeepLast checkpoints.
func (t *Trainer) prune(out string) error {
	if t.cfg.KeepLast <= 0 {
		return nil
	}
	steps, err := listCheckpoints(out)
	if err != nil {
		return err
	}
	for len(steps) > t.cfg.KeepLast {
		if err := os.RemoveAll(stepDir(out, steps[0])); err != nil {
			return fmt.Errorf("train: prune: %w", err)
		}
		steps = steps[1:]
	}
	return nil
}

// listCheckpoints returns the steps of out's complete checkpoints, ascending.
func listCheckpoints(out string) ([]int, error) {
	ents, err := os.ReadDir(out)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var steps []int
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), "step-")
		if !ok || !e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(out, e.Name(), StateFile)); err == nil {
			steps = append(steps, n)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// Latest resolves dir to a checkpoint: dir itself when it holds a
// state.json, else the newest complete checkpoint inside it.
func Latest(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		return dir, nil
	}
	steps, err := listCheckpoints(dir)
	if err != nil {
		return "", err
	}
	if len(steps) == 0 {
		return "", fmt.Errorf("train: %s holds no checkpoint (no %s, no step-* directory with one)", dir, StateFile)
	}
	return stepDir(dir, steps[len(steps)-1]), nil
}

// ReadState reads a checkpoint's state.json.
func ReadState(dir string) (State, error) {
	var st State
	js, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return st, fmt.Errorf("train: %w", err)
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return st, fmt.Errorf("train: %s: %w", filepath.Join(dir, StateFile), err)
	}
	if st.Format != stateFormat || st.Version != 1 {
		return st, fmt.Errorf("train: %s: format %q version %d, want %q version 1", filepath.Join(dir, StateFile), st.Format, st.Version, stateFormat)
	}
	if st.Step < 0 {
		return st, fmt.Errorf("train: %s: step %d", filepath.Join(dir, StateFile), st.Step)
	}
	if err := st.Config.Validate(); err != nil {
		return st, fmt.Errorf("%w (in %s)", err, filepath.Join(dir, StateFile))
	}
	return st, nil
}

// Restore opens the checkpoint dir (see Latest) and returns a trainer that
// continues it exactly — the weights, the moments and the step count — and
// its state (for the data position).
func Restore(backend compute.Backend, dir string) (*Trainer, State, error) {
	dir, err := Latest(dir)
	if err != nil {
		return nil, State{}, err
	}
	st, err := ReadState(dir)
	if err != nil {
		return nil, st, err
	}
	m, err := model.Load(dir, dtypes.Float32)
	if err != nil {
		return nil, st, err
	}
	ck, err := checkpoint.Open(filepath.Join(dir, OptimizerFile))
	if err != nil {
		return nil, st, fmt.Errorf("train: resume %s: %w", dir, err)
	}
	defer ck.Close()
	for _, name := range ck.Names() {
		if !strings.HasPrefix(name, "m/") && !strings.HasPrefix(name, "v/") {
			return nil, st, fmt.Errorf("train: resume %s: unexpected optimizer tensor %q", dir, name)
		}
		w, shape, err := ck.Float32(name)
		if err != nil {
			return nil, st, fmt.Errorf("train: resume %s: %w", dir, err)
		}
		target := m.Store.GetVariable(strings.TrimPrefix(name, name[:2]))
		if target == nil || !equalDims(target.Shape().Dimensions, shape) {
			return nil, st, fmt.Errorf("train: resume %s: optimizer tensor %q matches no weight of the model", dir, name)
		}
		if _, err := m.Store.CreateVariable(optScope+"/"+name, tensors.FromFlatDataAndDimensions(w, shape...)); err != nil {
			return nil, st, fmt.Errorf("train: resume %s: %w", dir, err)
		}
	}
	if _, err := m.Store.CreateVariable(optScope+"/step", tensors.FromValue(int64(st.Step))); err != nil {
		return nil, st, fmt.Errorf("train: resume %s: %w", dir, err)
	}
	t, err := New(backend, m, st.Config)
	if err != nil {
		return nil, st, err
	}
	t.step = st.Step
	return t, st, nil
}

func equalDims(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// syncDir fsyncs a directory so that renames in it are durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
