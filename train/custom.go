package train

import (
	"fmt"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// LossFunc builds a loss over the model from a step's inputs, plus values to
// report. It must call model.Forward on scope; the trainer differentiates the
// loss w.r.t. the stage's trainable weights the graph uses.
type LossFunc func(scope *gm.Scope, in []*graph.Node) (loss *graph.Node, report []*graph.Node)

// CustomStep takes optimizer steps on a loss the caller builds — RL's GRPO
// objective, for one — with the trainer's AdamW, clipping, schedule and
// optimizer state, so checkpoints and resume work as for the built-in stages.
type CustomStep struct {
	t    *Trainer
	exec *gm.Exec
}

// Custom compiles fn into a step (one micro-batch per step).
func (t *Trainer) Custom(fn LossFunc) (*CustomStep, error) {
	exec, err := gm.NewExec(t.backend, t.m.Store, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
		g := in[0].Graph()
		loss, report := fn(scope, in[:len(in)-1])
		vars := t.trainable(g)
		nodes := make([]*graph.Node, len(vars))
		for i, v := range vars {
			nodes[i] = v.NodeValue(g)
		}
		norm := t.adamW(g, vars, graph.Gradient(loss, nodes...), in[len(in)-1])
		return append([]*graph.Node{loss, norm}, report...)
	})
	if err != nil {
		return nil, fmt.Errorf("train: custom step: %w", err)
	}
	// One compiled step per input shape: callers bucket their shapes (rl
	// does), and the cache holds more of them than GoMLX's default 32.
	exec.SetMaxCache(256)
	return &CustomStep{t: t, exec: exec}, nil
}

// Step runs one optimizer step on args (fn's inputs, in order) at the
// schedule's learning rate, and returns the loss, the gradient norm before
// clipping and fn's reported values.
func (c *CustomStep) Step(args ...any) (loss, gradNorm float64, report []*tensors.Tensor, err error) {
	defer catch(&err, "train: custom step")
	t := c.t
	lr := t.cfg.LRAt(t.step)
	outs, err := c.exec.Exec(append(args, tensors.FromValue(float32(lr)))...)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("train: custom step %d: %w", t.step+1, err)
	}
	t.step++
	return float64(scalarOf(outs[0])), float64(scalarOf(outs[1])), outs[2:], nil
}

// Finalize releases the compiled step.
func (c *CustomStep) Finalize() { c.exec.Finalize() }
