package testutil

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/shapes"
)

// loops is the Go backend made able to run While loops built of closures,
// so that CI runs model.Options.DeviceLoop as XLA does. The Go backend
// (compute v0.1.2) compiles a closure when it returns, then lets its
// ImplicitBroadcastFusion pass rewire the closure's nodes, so the compiled
// closure misses nodes ("input 0 for node Equal not computed yet"). That
// pass fuses a BroadcastInDim into the op that consumes it; inside closures
// every broadcast is followed here by an Identity, which leaves it nothing to
// fuse. Outside closures nothing changes.
type loops struct{ compute.Backend }

// DeviceLoops tells model.Stepper that this backend runs its device loops.
func (b loops) DeviceLoops() bool { return true }

// Builders, buffers and executables are wrapped so that every tensor is
// bound to this backend (a tensor takes its backend from its buffer).

func (b loops) Builder(name string) compute.Builder { return loopsBuilder{b.Backend.Builder(name), b} }

func (b loops) BufferFromFlatData(dev compute.DeviceNum, flat any, shape shapes.Shape) (compute.Buffer, error) {
	buf, err := b.Backend.BufferFromFlatData(dev, flat, shape)
	return b.wrap(buf), err
}

func (b loops) NewSharedBuffer(dev compute.DeviceNum, shape shapes.Shape) (compute.Buffer, any, error) {
	buf, flat, err := b.Backend.NewSharedBuffer(dev, shape)
	return b.wrap(buf), flat, err
}

func (b loops) wrap(buf compute.Buffer) compute.Buffer {
	if buf == nil {
		return nil
	}
	return loopsBuffer{buf, b}
}

type loopsBuffer struct {
	compute.Buffer
	b loops
}

func (buf loopsBuffer) Backend() compute.Backend { return buf.b }

func (buf loopsBuffer) CopyToDevice(dev compute.DeviceNum) (compute.Buffer, error) {
	c, err := buf.Buffer.CopyToDevice(dev)
	return buf.b.wrap(c), err
}

type loopsExecutable struct {
	compute.Executable
	b loops
}

func (e loopsExecutable) Execute(inputs []compute.Buffer, donate []bool, dev compute.DeviceNum) ([]compute.Buffer, error) {
	in := make([]compute.Buffer, len(inputs))
	for i, buf := range inputs {
		if w, ok := buf.(loopsBuffer); ok {
			buf = w.Buffer
		}
		in[i] = buf
	}
	outs, err := e.Executable.Execute(in, donate, dev)
	for i := range outs {
		outs[i] = e.b.wrap(outs[i])
	}
	return outs, err
}

type loopsBuilder struct {
	compute.Builder
	b loops
}

func (b loopsBuilder) Compile() (compute.Executable, error) {
	e, err := b.Builder.Compile()
	if err != nil {
		return nil, err
	}
	return loopsExecutable{e, b.b}, nil
}

func (b loopsBuilder) Main() compute.Function { return loopsFunction{Function: b.Builder.Main()} }

func (b loopsBuilder) NewFunction(name string) (compute.Function, error) {
	f, err := b.Builder.NewFunction(name)
	if err != nil {
		return nil, err
	}
	return loopsFunction{Function: f}, nil
}

type loopsFunction struct {
	compute.Function
	closure bool
}

func (f loopsFunction) Closure() (compute.Function, error) {
	c, err := f.Function.Closure()
	if err != nil {
		return nil, err
	}
	return loopsFunction{Function: c, closure: true}, nil
}

func (f loopsFunction) BroadcastInDim(x compute.Value, shape shapes.Shape, axes []int) (compute.Value, error) {
	v, err := f.Function.BroadcastInDim(x, shape, axes)
	if err != nil || !f.closure {
		return v, err
	}
	return f.Function.Identity(v)
}

// The ops that take functions get the Go backend's own.

func (f loopsFunction) While(cond, body compute.Function, init ...compute.Value) ([]compute.Value, error) {
	return f.Function.While(unwrap(cond), unwrap(body), init...)
}

func (f loopsFunction) If(pred compute.Value, yes, no compute.Function) ([]compute.Value, error) {
	return f.Function.If(pred, unwrap(yes), unwrap(no))
}

func (f loopsFunction) Call(fn compute.Function, inputs ...compute.Value) ([]compute.Value, error) {
	return f.Function.Call(unwrap(fn), inputs...)
}

func (f loopsFunction) Sort(comparator compute.Function, axis int, stable bool, inputs ...compute.Value) ([]compute.Value, error) {
	return f.Function.Sort(unwrap(comparator), axis, stable, inputs...)
}

func unwrap(f compute.Function) compute.Function {
	if w, ok := f.(loopsFunction); ok {
		return w.Function
	}
	return f
}
