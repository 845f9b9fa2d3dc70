package model

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// RowCache is the first positions of one cache row, copied to the host by
// Stepper.SaveRow so that a later sequence sharing that prefix can take it
// back with LoadRow instead of prefilling it, after the row itself has gone
// to another sequence.
type RowCache struct {
	n    int
	data []*tensors.Tensor // per cache buffer, [1, slots, width] on the host (slots ≥ n)
}

// Len is the number of positions the copy holds.
func (r *RowCache) Len() int { return r.n }

// Slots is the cache capacity the copy needs: LoadRow refuses smaller.
func (r *RowCache) Slots() int { return r.data[0].Shape().Dim(1) }

// Bytes is the host memory the copy takes.
func (r *RowCache) Bytes() int64 {
	var b int64
	for _, t := range r.data {
		b += int64(t.Memory())
	}
	return b
}

// Free releases the copy.
func (r *RowCache) Free() {
	for _, t := range r.data {
		t.FinalizeAll()
	}
	r.data = nil
}

// rowSlots is how many slots a copy of n positions takes: a power of two of
// at least 16, so that few programs copy rows. Capacities are powers of two
// too, so a copy fits every cache that can hold its positions.
func rowSlots(n int) int {
	s := 16
	for s < n {
		s *= 2
	}
	return s
}

// SaveRow copies positions [0, n) of row's caches to the host.
func (s *Stepper) SaveRow(row, n int) (rc *RowCache, err error) {
	defer catch(&err, "save row")
	if row < 0 || row >= s.rows {
		return nil, fmt.Errorf("save row %d: outside [0, %d)", row, s.rows)
	}
	slots := rowSlots(n)
	if n < 1 || slots > s.capacity {
		return nil, fmt.Errorf("save row %d: %d positions (%d slots) in a cache of capacity %d", row, n, slots, s.capacity)
	}
	e, err := s.rowProgram(&s.saveRows, slots, func(_, at *graph.Node, in []*graph.Node) []*graph.Node {
		out := make([]*graph.Node, len(in))
		for i, c := range in {
			out[i] = graph.Gather(c, at) // [1, slots, W]
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	args := []any{tensors.FromScalar(int32(row))}
	for _, c := range s.caches {
		args = append(args, c)
	}
	outs, err := e.Exec(args...)
	if err != nil {
		return nil, err
	}
	for _, t := range outs {
		if err := t.ToLocal(); err != nil {
			return nil, err
		}
	}
	return &RowCache{n: n, data: outs}, nil
}

// LoadRow writes rc's positions into row's caches, as SaveRow took them from
// a row (of this stepper or another of the same model and options). The
// slots past rc.Len() it writes hold what followed in the saved row, and
// the sequence that takes the row writes them before it reads them.
func (s *Stepper) LoadRow(row int, rc *RowCache) (err error) {
	defer catch(&err, "load row")
	if row < 0 || row >= s.rows {
		return fmt.Errorf("load row %d: outside [0, %d)", row, s.rows)
	}
	if len(rc.data) != len(s.caches) {
		return fmt.Errorf("load row %d: a copy of %d caches for %d", row, len(rc.data), len(s.caches))
	}
	slots := rc.Slots()
	if slots > s.capacity {
		return fmt.Errorf("load row %d: %d slots in a cache of capacity %d", row, slots, s.capacity)
	}
	e, err := s.rowProgram(&s.loadRows, slots, func(row, at *graph.Node, in []*graph.Node) []*graph.Node {
		n := len(in) / 2
		data, caches := in[:n], in[n:]
		out := make([]*graph.Node, n)
		g := row.Graph()
		for i, c := range caches {
			if g.Backend().Capabilities().Operations[compute.OpTypeDynamicUpdateSlice] {
				zero := graph.ScalarZero(g, dtypes.Int32)
				out[i] = graph.DynamicUpdateSlice(c, data[i], []*graph.Node{row, zero, zero})
			} else {
				out[i] = overwrite(c, at, data[i], nil, writeZeroAdd)
			}
		}
		return out
	})
	if err != nil {
		return err
	}
	// The caches are donated, as to a step, so the row is written in place.
	args := []any{tensors.FromScalar(int32(row))}
	for _, t := range rc.data {
		args = append(args, t)
	}
	for _, c := range s.caches {
		d, err := graph.DonateTensorBuffer(c, s.backend, 0)
		if err != nil {
			return err
		}
		args = append(args, d)
	}
	outs, err := e.Exec(args...)
	if err != nil {
		s.caches = s.zeroCaches(s.rows, s.capacity) // the donated caches are gone
		return err
	}
	s.caches = outs
	return nil
}

// rowProgram is the program of one SaveRow or LoadRow size (slots), made on
// first use: fn gets the row index (a scalar), the row's first slots as
// coordinates at [1, slots, 2] and the program's other inputs.
func (s *Stepper) rowProgram(progs *map[int]*graph.Exec, slots int, fn func(row, at *graph.Node, in []*graph.Node) []*graph.Node) (*graph.Exec, error) {
	if e := (*progs)[slots]; e != nil {
		return e, nil
	}
	e, err := graph.NewExec(s.backend, func(in []*graph.Node) []*graph.Node {
		g := in[0].Graph()
		rows := graph.BroadcastToDims(graph.Reshape(in[0], 1, 1, 1), 1, slots, 1) // [1, slots, 1]
		pos := graph.Iota(g, shapes.Make(dtypes.Int32, 1, slots, 1), 1)           // [1, slots, 1]
		return fn(in[0], graph.Concatenate([]*graph.Node{rows, pos}, -1), in[1:]) // at [1, slots, 2]
	})
	if err != nil {
		return nil, err
	}
	e.SetMaxCache(-1) // a program per cache shape, as newExec's
	if *progs == nil {
		*progs = map[int]*graph.Exec{}
	}
	(*progs)[slots] = e
	return e, nil
}
