package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/server"
	"golang.org/x/term"
)

// runCmd generates one reply, streamed to the terminal.
type runCmd struct {
	modelFlags
	samplingFlags
	Prompt   string `arg:"" optional:"" help:"The user message (appended to --messages)."`
	Messages string `type:"existingfile" placeholder:"FILE.json" help:"A conversation: an array of messages, or {\"messages\": [...], \"tools\": [...]}."`
	System   string `help:"A system message to put first."`
}

// samplingFlags are run's and chat's generation settings.
type samplingFlags struct {
	Thinking    bool    `help:"Thinking mode: the model reasons first (shown dim, or after \"thinking:\")."`
	MaxTokens   int     `default:"512" placeholder:"N" help:"Most tokens per reply."`
	Temperature float64 `default:"1.0" help:"Sampling temperature (0: greedy)."`
	TopP        float64 `default:"0.95" help:"Nucleus sampling mass."`
	Seed        int64   `help:"Sampling seed (0: random)."`
}

// request is a chat request for messages with these settings.
func (f samplingFlags) request(messages []chat.Message) *server.ChatRequest {
	req := &server.ChatRequest{Model: localModel, Messages: messages, MaxTokens: &f.MaxTokens,
		Temperature: &f.Temperature, TopP: &f.TopP, Thinking: &server.Thinking{Enabled: f.Thinking}}
	if f.Seed != 0 {
		req.Seed = &f.Seed
	}
	return req
}

// localModel is the model name run and chat use with their in-process server.
const localModel = "local"

// opening is the conversation run and chat start from: a system message,
// then the messages of a conversation file.
func opening(system, file string) ([]chat.Message, error) {
	var messages []chat.Message
	if system != "" {
		messages = append(messages, chat.Message{Role: chat.RoleSystem, Content: system})
	}
	if file == "" {
		return messages, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	conv, err := conversation(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return append(messages, conv...), nil
}

func (c *runCmd) Run() error {
	messages, err := opening(c.System, c.Messages)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if c.Prompt != "" {
		messages = append(messages, chat.Message{Role: chat.RoleUser, Content: c.Prompt})
	}
	if len(messages) == 0 {
		return fmt.Errorf("run: give a prompt or --messages")
	}
	srv, closeAll, err := c.localServer()
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	p := newPrinter(os.Stdout)
	_, apiErr := srv.Chat(ctx, c.request(messages), p.chunk)
	p.end()
	if apiErr != nil {
		return fmt.Errorf("run: %s", apiErr.Message)
	}
	return nil
}

// printer shows a streamed reply: reasoning dim on a terminal (after
// "thinking: " otherwise), then the content, then tool calls one a line.
type printer struct {
	w     io.Writer
	tty   bool
	state int // 0 nothing yet, 1 in reasoning, 2 in content, 3 after a tool call
}

const (
	dim   = "\x1b[2m"
	bold  = "\x1b[1m"
	reset = "\x1b[0m"
)

func newPrinter(f *os.File) *printer {
	return &printer{w: f, tty: term.IsTerminal(int(f.Fd()))}
}

func (p *printer) chunk(c *server.ChatChunk) error {
	for _, ch := range c.Choices {
		d := ch.Delta
		if d.ReasoningContent != nil && *d.ReasoningContent != "" {
			if p.state != 1 {
				if p.tty {
					fmt.Fprint(p.w, dim)
				} else {
					fmt.Fprint(p.w, "thinking: ")
				}
				p.state = 1
			}
			fmt.Fprint(p.w, *d.ReasoningContent)
		}
		if d.Content != nil && *d.Content != "" {
			if p.state == 1 {
				p.endReasoning()
			}
			p.state = 2
			fmt.Fprint(p.w, *d.Content)
		}
		for _, call := range d.ToolCalls {
			if p.state == 1 {
				p.endReasoning()
			} else if p.state == 2 {
				fmt.Fprintln(p.w)
			}
			p.state = 3
			if p.tty {
				fmt.Fprintf(p.w, "%stool call:%s %s(%s)\n", bold, reset, call.Function.Name, call.Function.Arguments)
			} else {
				fmt.Fprintf(p.w, "tool call: %s(%s)\n", call.Function.Name, call.Function.Arguments)
			}
		}
	}
	return nil
}

func (p *printer) endReasoning() {
	if p.tty {
		fmt.Fprint(p.w, reset)
	}
	fmt.Fprint(p.w, "\n\n")
}

// end finishes the reply's output with a newline.
func (p *printer) end() {
	if p.state == 1 && p.tty {
		fmt.Fprint(p.w, reset)
	}
	if p.state != 3 {
		fmt.Fprintln(p.w)
	}
	p.state = 0
}
