// Package mcp connects the agent to Model Context Protocol servers through
// the official SDK (github.com/modelcontextprotocol/go-sdk): it starts a
// server as a command over stdio, or reaches one over streamable HTTP, lists
// its tools and wraps each as an agent.Tool.
//
// The agent's Toolbox validates arguments against each tool's input schema
// before the call reaches the server; a result with isError, or a protocol
// error, becomes an error result the model sees.
//
// It deliberately does not expose MCP resources, prompts, sampling or
// elicitation, does not follow tool-list changes after Tools is called, and
// does not sandbox the servers it starts: an MCP command runs with the
// agent's own rights.
package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/dsv32/dsv32/agent"
)

// Server is a connected MCP server.
type Server struct {
	session *sdk.ClientSession
	name    string
	// Prefix is prepended to tool names the model sees ("" by default), to
	// keep the tools of several servers apart.
	Prefix string
}

var impl = &sdk.Implementation{Name: "dsv32-agent", Version: "0.1"}

// Connect opens a session over any SDK transport.
func Connect(ctx context.Context, t sdk.Transport, name string) (*Server, error) {
	cs, err := sdk.NewClient(impl, nil).Connect(ctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("mcp: connect to %s: %w", name, err)
	}
	return &Server{session: cs, name: name}, nil
}

// Dial connects to spec: an http:// or https:// URL is a streamable-HTTP
// server; anything else is a command line (split on spaces, no shell) run as
// a stdio server.
func Dial(ctx context.Context, spec string) (*Server, error) {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
		return Connect(ctx, &sdk.StreamableClientTransport{Endpoint: spec, DisableStandaloneSSE: true}, spec)
	}
	f := strings.Fields(spec)
	if len(f) == 0 {
		return nil, errors.New("mcp: empty server command")
	}
	return Connect(ctx, &sdk.CommandTransport{Command: exec.Command(f[0], f[1:]...)}, spec)
}

// Close ends the session (and stops a command server).
func (s *Server) Close() error {
	if err := s.session.Close(); err != nil {
		return fmt.Errorf("mcp: close %s: %w", s.name, err)
	}
	return nil
}

// Tools lists the server's tools, all pages of them.
func (s *Server) Tools(ctx context.Context) ([]agent.Tool, error) {
	var out []agent.Tool
	cursor := ""
	for page := 0; page < 100; page++ {
		res, err := s.session.ListTools(ctx, &sdk.ListToolsParams{Cursor: cursor})
		if err != nil {
			return nil, fmt.Errorf("mcp: list tools of %s: %w", s.name, err)
		}
		for _, t := range res.Tools {
			schema, err := json.Marshal(t.InputSchema)
			if err != nil || string(schema) == "null" {
				schema = []byte(`{"type":"object"}`)
			}
			out = append(out, &tool{server: s, name: t.Name, spec: agent.ToolSpec{Name: s.Prefix + t.Name,
				Description: t.Description, Parameters: schema}})
		}
		if res.NextCursor == "" {
			return out, nil
		}
		cursor = res.NextCursor
	}
	return nil, fmt.Errorf("mcp: %s: too many tool pages", s.name)
}

type tool struct {
	server *Server
	name   string // on the server
	spec   agent.ToolSpec
}

func (t *tool) Spec() agent.ToolSpec { return t.spec }

// Call forwards the call and renders the result's content as text.
func (t *tool) Call(ctx context.Context, raw json.RawMessage) (string, error) {
	var args map[string]any
	if err := json.Unmarshal(raw, &args); err != nil {
		return "", fmt.Errorf("mcp %s: %w", t.name, err)
	}
	res, err := t.server.session.CallTool(ctx, &sdk.CallToolParams{Name: t.name, Arguments: args})
	if err != nil {
		return "", fmt.Errorf("mcp server %s, tool %s: %w", t.server.name, t.name, err)
	}
	text := render(res)
	if res.IsError {
		return "", errors.New(text)
	}
	return text, nil
}

func render(res *sdk.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		switch c := c.(type) {
		case *sdk.TextContent:
			parts = append(parts, c.Text)
		case *sdk.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, %d bytes]", c.MIMEType, len(c.Data)))
		case *sdk.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s]", c.MIMEType))
		default:
			b, err := c.MarshalJSON()
			if err != nil {
				b = []byte(fmt.Sprintf("[%T]", c))
			}
			parts = append(parts, string(b))
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		parts = append(parts, string(b))
	}
	return strings.Join(parts, "\n")
}
