package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/agent/mcp"
	"github.com/dsv32/dsv32/agent/sandbox"
	"github.com/dsv32/dsv32/agent/search"
	"github.com/dsv32/dsv32/agent/workspace"
)

// agentCmd runs the agent against an OpenAI-compatible endpoint and replays
// its trajectories.
type agentCmd struct {
	Run    agentRunCmd    `cmd:"" help:"Run a task with tools against an OpenAI-compatible endpoint, streaming what happens."`
	Replay agentReplayCmd `cmd:"" help:"Show a trajectory file written by 'agent run --trajectory'."`
}

type agentRunCmd struct {
	Prompt        string        `arg:"" optional:"" help:"The task. Or use --task."`
	Task          string        `help:"A task file: JSON with \"prompt\" (and optionally \"system\"), or plain text." type:"existingfile"`
	Endpoint      string        `default:"http://127.0.0.1:8000" env:"DSV32_ENDPOINT" help:"Base URL of the endpoint (…/v1/chat/completions is appended)."`
	APIKey        string        `env:"OPENAI_API_KEY" help:"Bearer token for the endpoint."`
	Model         string        `default:"deepseek-v3.2" help:"Model name sent to the endpoint."`
	System        string        `help:"System prompt."`
	Thinking      bool          `help:"Ask for thinking mode (DeepSeek's thinking field)."`
	Tools         []string      `sep:"," enum:"python,bash,files,search" default:"" placeholder:"TOOL" help:"Built-in tools: python,bash,files,search."`
	MCP           []string      `name:"mcp" sep:"none" placeholder:"CMD|URL" help:"An MCP server: a command line (stdio) or an http(s) URL. Repeatable."`
	Index         string        `help:"Search index for the search tool (built by 'dsv32 index')." type:"existingfile"`
	ContextPolicy string        `enum:"summary,discard75,discard-all,none" default:"none" help:"What to do when the context passes --threshold of --window: summary, discard75, discard-all or none."`
	Threshold     float64       `default:"0.8" help:"Share of the window that triggers the context policy."`
	Window        int           `default:"131072" help:"Context window in tokens."`
	MaxSteps      int           `default:"50" help:"Model calls per run."`
	TokenBudget   int           `help:"Prompt+completion tokens per run (0: no limit)."`
	MaxTokens     int           `help:"Tokens per reply (0: endpoint default)."`
	Parallel      int           `default:"1" help:"Independent runs; the answer of the one with the fewest steps is kept."`
	Trajectory    string        `help:"Write the trajectory as JSON lines to this file." type:"path"`
	Stream        bool          `default:"true" negatable:"" help:"Stream tokens from the endpoint."`
	ToolTimeout   time.Duration `default:"30s" help:"Wall-clock limit of one python or bash call."`
	Keep          bool          `help:"Keep the workspace directory instead of removing it."`
	Quiet         bool          `short:"q" help:"Print only the answer."`
}

// task reads the prompt and system prompt from the arguments or task file.
func (c *agentRunCmd) task() (prompt, system string, err error) {
	prompt, system = c.Prompt, c.System
	if c.Task != "" {
		b, err := os.ReadFile(c.Task)
		if err != nil {
			return "", "", fmt.Errorf("task file: %w", err)
		}
		var tf struct {
			Prompt, Question, System string
		}
		if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "{") {
			if err := json.Unmarshal(b, &tf); err != nil {
				return "", "", fmt.Errorf("task file %s: %w", c.Task, err)
			}
			prompt = tf.Prompt
			if prompt == "" {
				prompt = tf.Question
			}
			if system == "" {
				system = tf.System
			}
		} else {
			prompt = t
		}
	}
	if strings.TrimSpace(prompt) == "" {
		return "", "", errors.New("no task: give a prompt or --task FILE")
	}
	return prompt, system, nil
}

// episode is one run's tools and their cleanup.
type episode struct {
	box     *agent.Toolbox
	dir     string
	cleanup []func() error
}

func (e *episode) close() error {
	var errs []error
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		errs = append(errs, e.cleanup[i]())
	}
	return errors.Join(errs...)
}

// tools builds one episode's toolbox: a workspace (the sandbox's directory
// when python or bash is on), the built-ins asked for, and MCP tools.
func (c *agentRunCmd) tools(ctx context.Context, ix *search.Index) (*episode, error) {
	ep := &episode{box: &agent.Toolbox{}}
	want := map[string]bool{}
	for _, t := range c.Tools {
		if t != "" {
			want[t] = true
		}
	}
	var toolList []agent.Tool
	if want["python"] || want["bash"] {
		sb, err := sandbox.New(sandbox.Config{Timeout: c.ToolTimeout})
		if err != nil {
			return ep, err
		}
		ep.dir = sb.Dir()
		if !c.Keep {
			ep.cleanup = append(ep.cleanup, sb.Close)
		}
		if want["python"] {
			toolList = append(toolList, sandbox.Python(sb))
		}
		if want["bash"] {
			toolList = append(toolList, sandbox.Bash(sb))
		}
	}
	if want["files"] {
		if ep.dir == "" {
			d, err := os.MkdirTemp("", "dsv32-workspace-")
			if err != nil {
				return ep, fmt.Errorf("workspace: %w", err)
			}
			ep.dir = d
			if !c.Keep {
				ep.cleanup = append(ep.cleanup, func() error { return os.RemoveAll(d) })
			}
		}
		ws, err := workspace.Open(ep.dir)
		if err != nil {
			return ep, err
		}
		ep.cleanup = append(ep.cleanup, ws.Close)
		toolList = append(toolList, workspace.Tool(ws))
	}
	if want["search"] {
		if ix == nil {
			return ep, errors.New("the search tool needs --index (build one with 'dsv32 index')")
		}
		toolList = append(toolList, search.Tools(ix)...)
	}
	for _, spec := range c.MCP {
		srv, err := mcp.Dial(ctx, spec)
		if err != nil {
			return ep, err
		}
		ep.cleanup = append(ep.cleanup, srv.Close)
		ts, err := srv.Tools(ctx)
		if err != nil {
			return ep, err
		}
		toolList = append(toolList, ts...)
	}
	for _, t := range toolList {
		if err := ep.box.Add(t); err != nil {
			return ep, err
		}
	}
	return ep, nil
}

func (c *agentRunCmd) policy(client agent.Client) agent.ContextPolicy {
	th := agent.Threshold(c.Threshold)
	switch c.ContextPolicy {
	case "summary":
		return &agent.Summary{Threshold: th, Client: client, Model: c.Model}
	case "discard75":
		return &agent.DiscardToolHistory{Threshold: th, Fraction: 0.75}
	case "discard-all":
		return &agent.DiscardToolHistory{Threshold: th, Fraction: 1}
	}
	return nil
}

func (c *agentRunCmd) Run() error {
	prompt, system, err := c.task()
	if err != nil {
		return err
	}
	if c.Parallel < 1 {
		return errors.New("--parallel must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var ix *search.Index
	if c.Index != "" {
		if ix, err = search.Load(c.Index); err != nil {
			return err
		}
	}
	var traj *agent.Trajectory
	if c.Trajectory != "" {
		f, err := os.Create(c.Trajectory)
		if err != nil {
			return fmt.Errorf("trajectory: %w", err)
		}
		defer f.Close()
		traj = agent.NewTrajectory(f)
	}
	term := io.Writer(os.Stderr)
	if c.Quiet {
		term = io.Discard
	}
	var mu sync.Mutex // one terminal for parallel runs
	printer := &agent.Printer{W: term}
	stream := c.Stream && c.Parallel == 1 && !c.Quiet

	runOne := func(ctx context.Context, i int) (agent.Result, error) {
		ep, err := c.tools(ctx, ix)
		defer func() {
			if cerr := ep.close(); cerr != nil {
				slog.Warn("agent: cleanup", "err", cerr)
			}
		}()
		if err != nil {
			return agent.Result{Stop: agent.StopError}, err
		}
		if ep.dir != "" && c.Keep {
			fmt.Fprintf(term, "workspace: %s\n", ep.dir)
		}
		client := &agent.HTTPClient{BaseURL: c.Endpoint, APIKey: c.APIKey, Retries: 2}
		summariser := *client
		phase := "" // what the streamed terminal shows: "", "thinking" or "content"
		if stream {
			client.Stream = true
			client.OnDelta = func(d agent.Delta) {
				switch {
				case d.Reasoning != "":
					if phase != "thinking" {
						fmt.Fprint(term, "[thinking] ")
						phase = "thinking"
					}
					fmt.Fprint(term, d.Reasoning)
				case d.Content != "":
					if phase == "thinking" {
						fmt.Fprintln(term)
					}
					phase = "content"
					fmt.Fprint(term, d.Content)
				}
			}
		}
		a := &agent.Agent{Client: client, Model: c.Model, System: system, Tools: ep.box, MaxSteps: c.MaxSteps,
			TokenBudget: c.TokenBudget, MaxTokens: c.MaxTokens, Window: c.Window, Policy: c.policy(&summariser)}
		if c.Thinking {
			a.Thinking = &c.Thinking
		}
		a.OnEvent = func(e agent.Event) {
			if c.Parallel > 1 {
				e.Run = i + 1
			}
			if traj != nil {
				traj.Record(e)
			}
			mu.Lock()
			defer mu.Unlock()
			if stream && e.Type == agent.EventMessage && e.Message.Role == agent.RoleAssistant {
				m := *e.Message // already streamed: show only the summary line and calls
				m.Content, m.ReasoningContent = "", ""
				e.Message = &m
				fmt.Fprintln(term)
			}
			if stream && e.Type == agent.EventMessage {
				phase = ""
			}
			printer.Print(e)
		}
		return a.Run(ctx, prompt)
	}

	var res agent.Result
	if c.Parallel == 1 {
		res, err = runOne(ctx, 0)
	} else {
		pr := agent.Parallel(ctx, c.Parallel, runOne, agent.FewestSteps)
		fmt.Fprintf(term, "== %d runs, %d steps in all; ", c.Parallel, pr.Steps)
		if pr.Best < 0 {
			fmt.Fprintln(term, "no run answered")
			return errors.Join(append([]error{errors.New("agent: no run answered")}, pr.Errors...)...)
		}
		fmt.Fprintf(term, "keeping run %d (%d steps)\n", pr.Best+1, pr.Runs[pr.Best].Steps)
		res, err = pr.Runs[pr.Best], pr.Errors[pr.Best]
	}
	if traj != nil && traj.Err() != nil {
		slog.Warn("agent: trajectory incomplete", "err", traj.Err())
	}
	if err != nil {
		return err
	}
	fmt.Println(res.Answer)
	if res.Stop != agent.StopAnswer {
		return fmt.Errorf("agent stopped without an answer: %s", res.Stop)
	}
	return nil
}

type agentReplayCmd struct {
	File     string `arg:"" type:"existingfile" help:"A trajectory (JSON lines)."`
	MaxChars int    `default:"2000" help:"Characters shown per text block."`
}

func (c *agentReplayCmd) Run() error {
	f, err := os.Open(c.File)
	if err != nil {
		return err
	}
	defer f.Close()
	evs, err := agent.ReadTrajectory(f)
	p := &agent.Printer{W: os.Stdout, MaxChars: c.MaxChars}
	for _, e := range evs {
		p.Print(e)
	}
	return err
}
