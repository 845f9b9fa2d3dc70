package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/agent/agenttest"
)

func runCLI(t *testing.T, args ...string) error {
	t.Helper()
	var c cli
	p, err := kong.New(&c, kong.Name("dsv32"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := p.Parse(args)
	if err != nil {
		return err
	}
	return ctx.Run()
}

// TestAgentCommands: index a collection, run the agent with the search and
// files tools against a scripted endpoint, and replay the trajectory.
func TestAgentCommands(t *testing.T) {
	dir := t.TempDir()
	idx := filepath.Join(dir, "docs.idx")
	if err := runCLI(t, "index", "--out", idx, "../../testdata/agent/docs"); err != nil {
		t.Fatal(err)
	}
	srv := agenttest.NewServer(
		agenttest.Reply{Reasoning: "search first", ToolCalls: []agent.ToolCall{
			{ID: "a", Name: "search", Arguments: `{"query":"lightning indexer"}`},
			{ID: "b", Name: "files", Arguments: `{"op":"write","path":"notes.txt","content":"dsa"}`}}},
		agenttest.Reply{Content: "The lightning indexer."},
	)
	defer srv.Close()
	traj := filepath.Join(dir, "run.jsonl")
	task := filepath.Join(dir, "task.json")
	os.WriteFile(task, []byte(`{"prompt":"What scores tokens in DSA?","system":"Be brief."}`), 0o644)
	if err := runCLI(t, "agent", "run", "--task", task, "--endpoint", srv.URL, "--tools", "search,files", "--index", idx,
		"--context-policy", "discard-all", "--trajectory", traj, "-q"); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || len(reqs[0].Tools) != 3 || reqs[0].Messages[0]["content"] != "Be brief." {
		t.Fatalf("requests %+v", reqs)
	}
	if got := reqs[1].Messages[3]["content"].(string); !strings.HasPrefix(got, "1. [dsa.md#1] DeepSeek Sparse Attention") {
		t.Errorf("search result %q", got)
	}
	f, err := os.Open(traj)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := agent.ReadTrajectory(f)
	f.Close()
	if err != nil || len(evs) != 8 || evs[len(evs)-1].Stop != agent.StopAnswer {
		t.Errorf("trajectory: %d events, %v", len(evs), err)
	}
	if err := runCLI(t, "agent", "replay", traj); err != nil {
		t.Error(err)
	}
	if err := runCLI(t, "agent", "run", "--endpoint", srv.URL); err == nil || !strings.Contains(err.Error(), "no task") {
		t.Errorf("missing task: %v", err)
	}
	if err := runCLI(t, "agent", "run", "x", "--tools", "search"); err == nil || !strings.Contains(err.Error(), "--index") {
		t.Errorf("search without index: %v", err)
	}
	if err := runCLI(t, "agent", "run", "x", "--tools", "web"); err == nil {
		t.Error("unknown tool accepted")
	}
}

// TestAgentSandboxTools runs python and bash through the CLI, streaming.
func TestAgentSandboxTools(t *testing.T) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap not installed (apt-get install -y bubblewrap)")
	}
	srv := agenttest.NewServer(
		agenttest.Reply{Reasoning: "compute", Content: "Let me run it.", ToolCalls: []agent.ToolCall{
			{ID: "a", Name: "python", Arguments: `{"code":"open('x.txt','w').write(str(6*7))"}`}}},
		agenttest.Reply{ToolCalls: []agent.ToolCall{{ID: "b", Name: "bash", Arguments: `{"code":"cat x.txt"}`},
			{ID: "c", Name: "files", Arguments: `{"op":"read","path":"x.txt"}`}}},
		agenttest.Reply{Content: "42"},
	)
	defer srv.Close()
	if err := runCLI(t, "agent", "run", "six times seven?", "--endpoint", srv.URL, "--tools", "python,bash,files",
		"--tool-timeout", "20s"); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Requests()[2].Messages
	if msgs[4]["content"] != "exit code: 0\nstdout:\n42" || msgs[5]["content"] != "42" {
		t.Errorf("tool results %v / %v", msgs[4]["content"], msgs[5]["content"])
	}
}
