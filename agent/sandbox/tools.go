package sandbox

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/dsv32/dsv32/agent"
)

// MaxCode bounds the code of one call; it travels as one argument.
const MaxCode = 100 << 10

var codeSchema = json.RawMessage(`{"type":"object","properties":{"code":{"type":"string","minLength":1,"maxLength":102400,` +
	`"description":"the program"}},"required":["code"],"additionalProperties":false}`)

// Python is the python tool: it runs a Python 3 program in the sandbox and
// returns its exit status and output. Nothing but files in /work persists
// between calls.
func Python(s *Sandbox) agent.Tool {
	return codeTool(s, "python", "Run a Python 3 program in a sandbox with no network. The working directory /work "+
		"persists between calls; print what you need to see. Limits: "+s.limits()+".", "/usr/bin/env", "python3", "-c")
}

// Bash is the bash tool: it runs a bash script in the sandbox.
func Bash(s *Sandbox) agent.Tool {
	return codeTool(s, "bash", "Run a bash script in a sandbox with no network. The working directory /work "+
		"persists between calls. Limits: "+s.limits()+".", "/bin/bash", "-c")
}

func (s *Sandbox) limits() string {
	c := s.cfg
	return fmt.Sprintf("%v wall clock, %d CPU seconds, %d MiB memory, %d processes, %d KiB output",
		c.Timeout, c.CPUSeconds, c.MemoryBytes>>20, c.Processes, c.OutputBytes>>10)
}

func codeTool(s *Sandbox, name, desc string, argv ...string) agent.Tool {
	spec := agent.ToolSpec{Name: name, Description: desc, Parameters: codeSchema}
	return agent.Func(spec, func(ctx context.Context, raw json.RawMessage) (string, error) {
		var args struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(raw, &args); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		res, err := s.Run(ctx, append(append([]string(nil), argv...), args.Code))
		if err != nil {
			return "", err
		}
		return res.String(), nil
	})
}
