package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/tokenizer"
)

// renderCmd prints the prompt DeepSeek-V3.2 sees for a conversation.
//
// The input is JSON: either an array of OpenAI-style messages, or an object
// {"messages": [...], "tools": [...], "response_format": {...}} as in a chat
// completions request (DeepSeek's encoding/test_input.json has this shape).
// Request-level tools and response format go on the first system message, or
// on a new empty system message in front when there is none, as DeepSeek's
// test and an OpenAI-compatible server do (chat.AttachTools).
type renderCmd struct {
	File      string `arg:"" optional:"" type:"path" help:"The conversation JSON; stdin when absent or '-'."`
	Thinking  bool   `help:"Thinking mode (thinking_mode \"thinking\"); the default is chat mode."`
	NoBOS     bool   `name:"no-bos" help:"Do not start the prompt with the BOS string."`
	Tokenizer string `type:"existingfile" placeholder:"PATH" help:"A tokenizer.json: also print the prompt's token ids."`
}

func (c *renderCmd) Run() error {
	data, err := readInput(c.File)
	if err != nil {
		return err
	}
	messages, err := conversation(data)
	if err != nil {
		return fmt.Errorf("render %s: %w", c.name(), err)
	}
	prompt, err := chat.Encode(messages, chat.Options{Thinking: c.Thinking, DropThinking: true, AddBOS: !c.NoBOS})
	if err != nil {
		return fmt.Errorf("render %s: %w", c.name(), err)
	}
	out := bytes.NewBufferString(prompt)
	out.WriteByte('\n')
	if c.Tokenizer != "" {
		tok, err := tokenizer.Load(c.Tokenizer)
		if err != nil {
			return err
		}
		ids := tok.Encode(prompt)
		strs := make([]string, len(ids))
		for i, id := range ids {
			strs[i] = strconv.Itoa(id)
		}
		fmt.Fprintf(out, "ids (%d): %s\n", len(ids), strings.Join(strs, " "))
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func (c *renderCmd) name() string {
	if c.File == "" || c.File == "-" {
		return "stdin"
	}
	return c.File
}

func readInput(path string) ([]byte, error) {
	if path == "" || path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

// conversation reads an array of messages or a request-like object.
func conversation(data []byte) ([]chat.Message, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var messages []chat.Message
		if err := json.Unmarshal(data, &messages); err != nil {
			return nil, fmt.Errorf("messages: %w", err)
		}
		return messages, nil
	}
	var req struct {
		Messages       []chat.Message  `json:"messages"`
		Tools          []chat.Tool     `json:"tools"`
		ResponseFormat json.RawMessage `json:"response_format"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("want an array of messages or an object with \"messages\": %w", err)
	}
	if req.Messages == nil {
		return nil, fmt.Errorf(`no "messages" in the object`)
	}
	if string(req.ResponseFormat) == "null" {
		req.ResponseFormat = nil
	}
	return chat.AttachTools(req.Messages, req.Tools, req.ResponseFormat)
}
