package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/env"
	"github.com/dsv32/dsv32/internal/atomicfile"
)

// dataLadderCmd writes SFT conversations from a task of the RL ladder (package
// env): the user asks the task's prompt, the assistant gives the reference
// answer. Problems come from one split only, so a model fine-tuned on the
// train split is evaluated by `dsv32 rl` on problems it never saw.
type dataLadderCmd struct {
	Task  string `required:"" help:"Task of the ladder with knobs, e.g. reverse:min=4,max=12 or add (docs/tasks.md)."`
	N     int    `default:"10000" help:"Conversations to write."`
	Split string `default:"train" enum:"train,test" help:"Which split the problems come from."`
	Seed  uint64 `default:"1" help:"Seed of the problems (the same seed gives the same file)."`
	Out   string `required:"" type:"path" placeholder:"FILE.jsonl" help:"Where to write {\"messages\": [user, assistant]} lines (OpenAI format, for dsv32 train --stage sft)."`
}

func (c *dataLadderCmd) Run() error {
	if c.N < 1 {
		return fmt.Errorf("data ladder: --n %d, want at least 1", c.N)
	}
	task, err := env.Lookup(c.Task)
	if err != nil {
		return err
	}
	split := env.Train
	if c.Split == "test" {
		split = env.Test
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, ex := range env.Sample(task, split, c.Seed, c.N) {
		conv := struct {
			Messages []chat.Message `json:"messages"`
		}{append(ex.Chat(), chat.Message{Role: chat.RoleAssistant, Content: ex.Answer})}
		if err := enc.Encode(conv); err != nil {
			return fmt.Errorf("data ladder: %w", err)
		}
	}
	if err := atomicfile.Write(c.Out, buf.Bytes()); err != nil {
		return fmt.Errorf("data ladder: %w", err)
	}
	fmt.Printf("wrote %s: %d %s conversations (%s split)\n", c.Out, c.N, task.Name(), split)
	return nil
}
