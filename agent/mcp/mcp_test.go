package mcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/dsv32/dsv32/agent"
)

type addIn struct {
	A int `json:"a" jsonschema:"first addend"`
	B int `json:"b" jsonschema:"second addend"`
}

type addOut struct {
	Sum int `json:"sum"`
}

type shoutIn struct {
	Text string `json:"text"`
}

// testServer is an in-process MCP server with three tools.
func testServer() *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "test", Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "add", Description: "Add two integers."},
		func(_ context.Context, _ *sdk.CallToolRequest, in addIn) (*sdk.CallToolResult, addOut, error) {
			return nil, addOut{in.A + in.B}, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "shout", Description: "Upper-case text."},
		func(_ context.Context, _ *sdk.CallToolRequest, in shoutIn) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: strings.ToUpper(in.Text)},
				&sdk.ImageContent{MIMEType: "image/png", Data: []byte{1, 2, 3}}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "fail", Description: "Always fails."},
		func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
			return nil, nil, errors.New("the disk is on fire")
		})
	return s
}

// TestMain doubles as a stdio MCP server when re-executed by TestStdio.
func TestMain(m *testing.M) {
	if os.Getenv("DSV32_MCP_TEST_SERVER") == "1" {
		if err := testServer().Run(context.Background(), &sdk.StdioTransport{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func checkTools(t *testing.T, srv *Server) {
	t.Helper()
	ctx := context.Background()
	tools, err := srv.Tools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	box, err := agent.NewToolbox(tools...)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range box.Specs() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "add,fail,shout" {
		t.Errorf("tools %v", names)
	}
	tests := []struct {
		name, args, want string
		isErr            bool
	}{
		{"add", `{"a":2,"b":40}`, `{"sum":42}`, false},
		{"shout", `{"text":"hi"}`, "HI\n[image image/png, 3 bytes]", false},
		{"fail", `{}`, "error: the disk is on fire", true},
		{"add", `{"a":"2","b":40}`, "error: invalid arguments for add: $.a: expected integer, got string", true},
		{"add", `{"a":2}`, `error: invalid arguments for add: $: missing required property "b"`, true},
		{"add", `{"a":2,`, "error: malformed arguments for add", true},
	}
	for _, tc := range tests {
		got, isErr := box.Call(ctx, agent.ToolCall{Name: tc.name, Arguments: tc.args})
		if isErr != tc.isErr || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s(%s) = %q, %v; want %q, %v", tc.name, tc.args, got, isErr, tc.want, tc.isErr)
		}
	}
}

func TestInMemory(t *testing.T) {
	ctx := context.Background()
	st, ct := sdk.NewInMemoryTransports()
	ss, err := testServer().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	srv, err := Connect(ctx, ct, "in-memory")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	checkTools(t, srv)
}

func TestStreamableHTTP(t *testing.T) {
	s := testServer()
	hs := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	defer hs.Close()
	srv, err := Dial(context.Background(), hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	checkTools(t, srv)
}

func TestStdio(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DSV32_MCP_TEST_SERVER", "1") // inherited by the command
	srv, err := Dial(context.Background(), exe+" -test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	checkTools(t, srv)
	if err := srv.Close(); err != nil {
		t.Error(err)
	}
	if _, err := Dial(context.Background(), "/nonexistent/mcp-server"); err == nil {
		t.Error("dialled a missing command")
	}
}

func TestPrefix(t *testing.T) {
	ctx := context.Background()
	st, ct := sdk.NewInMemoryTransports()
	ss, _ := testServer().Connect(ctx, st, nil)
	defer ss.Close()
	srv, err := Connect(ctx, ct, "m")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Prefix = "calc_"
	tools, _ := srv.Tools(ctx)
	box, _ := agent.NewToolbox(tools...)
	if got, isErr := box.Call(ctx, agent.ToolCall{Name: "calc_add", Arguments: `{"a":1,"b":1}`}); isErr || got != `{"sum":2}` {
		t.Errorf("prefixed call: %q %v", got, isErr)
	}
}
