package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/dsv32/dsv32/chat"
	"golang.org/x/term"
)

// chatCmd is an interactive chat in the terminal. It reads one user message
// per line from stdin (so it also works with piped input); /reset starts
// over, /exit (or end of input) quits. The model's tool calls are printed;
// chat runs no tools, so each call is answered with a result saying so.
type chatCmd struct {
	modelFlags
	samplingFlags
	Messages string `type:"existingfile" placeholder:"FILE.json" help:"A conversation to start from: an array of messages, or {\"messages\": [...], \"tools\": [...]}."`
	System   string `help:"A system message to put first."`
}

const noTools = "error: no tool runs in dsv32 chat; answer without it"

func (c *chatCmd) Run() error {
	start, err := opening(c.System, c.Messages)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	srv, closeAll, err := c.localServer()
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	interactive := term.IsTerminal(int(os.Stdin.Fd()))
	if interactive {
		fmt.Println("dsv32 chat: type a message; /reset starts over, /exit quits.")
	}
	history := append([]chat.Message(nil), start...)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	for {
		if interactive {
			fmt.Print("> ")
		}
		if !in.Scan() {
			if interactive {
				fmt.Println()
			}
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch {
		case line == "":
			continue
		case line == "/exit" || line == "/quit":
			return nil
		case line == "/reset":
			history = append(history[:0:0], start...)
			fmt.Println("(conversation reset)")
			continue
		case strings.HasPrefix(line, "/"):
			fmt.Println("commands: /reset starts over, /exit quits")
			continue
		}
		history = append(history, chat.Message{Role: chat.RoleUser, Content: line})
		p := newPrinter(os.Stdout)
		resp, apiErr := srv.Chat(ctx, c.request(history), p.chunk)
		p.end()
		if ctx.Err() != nil {
			return nil
		}
		if apiErr != nil {
			fmt.Fprintln(os.Stderr, "error:", apiErr.Message)
			history = history[:len(history)-1]
			continue
		}
		m := resp.Choices[0].Message
		history = append(history, chat.Message{Role: chat.RoleAssistant, Content: m.Content,
			ReasoningContent: m.ReasoningContent, ToolCalls: m.ToolCalls})
		for _, call := range m.ToolCalls {
			history = append(history, chat.Message{Role: chat.RoleTool, ToolCallID: call.ID, Content: noTools})
		}
	}
}
