package agent

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"
)

// Reasons a run stops.
const (
	StopAnswer      = "answer"           // the model replied without tool calls
	StopLength      = "length"           // ... but its reply was cut at max tokens
	StopMaxSteps    = "max_steps"        // the step budget is spent
	StopTokenBudget = "token_budget"     // the token budget is spent
	StopContext     = "context_overflow" // the window is full and no policy is set
	StopError       = "error"            // the endpoint or a policy failed
)

// Defaults of Agent's zero fields.
const (
	DefaultMaxSteps = 50
	DefaultWindow   = 128 << 10
)

// Agent runs the tool-use loop: send the history and the tool declarations,
// receive reasoning, content and tool calls, run the calls, append the
// results, repeat until the model answers or a budget is spent.
//
// The history keeps every assistant message's reasoning; who applies the
// retention rule depends on the Client (HTTPClient: the server; PromptClient:
// the runtime). Context policies fire before a model call when the tokens in
// use exceed their share of Window.
type Agent struct {
	Client      Client
	Model       string
	System      string   // "": no system message
	Tools       *Toolbox // nil: no tools
	MaxSteps    int      // model calls; 0: DefaultMaxSteps
	TokenBudget int      // prompt+completion tokens over the run; 0: none
	MaxTokens   int      // per reply; 0: endpoint default
	Window      int      // context window in tokens; 0: DefaultWindow
	Policy      ContextPolicy
	Counter     TokenCounter // nil: Estimate
	Thinking    *bool
	Temperature *float64
	TopP        *float64
	// SequentialTools runs one reply's tool calls one after another; by
	// default they run concurrently. Results are appended in call order
	// either way.
	SequentialTools bool
	OnEvent         func(Event) // trajectory, terminal; called from one goroutine
	now             func() time.Time
}

// Result is the outcome of a run.
type Result struct {
	Answer   string
	Stop     string
	Steps    int // model calls
	Resets   int // context-policy rewrites
	Usage    Usage
	Messages []Message // the final history
	Elapsed  time.Duration
}

// Run starts a run on one task.
func (a *Agent) Run(ctx context.Context, task string) (Result, error) {
	var msgs []Message
	if a.System != "" {
		msgs = append(msgs, Message{Role: RoleSystem, Content: a.System})
	}
	return a.Continue(ctx, append(msgs, Message{Role: RoleUser, Content: task}))
}

// Continue runs from a history whose last message is a user message (a new
// turn) or tool results.
func (a *Agent) Continue(ctx context.Context, history []Message) (Result, error) {
	now := a.now
	if now == nil {
		now = time.Now
	}
	counter := a.Counter
	if counter == nil {
		counter = Estimate
	}
	maxSteps := a.MaxSteps
	if maxSteps <= 0 {
		maxSteps = DefaultMaxSteps
	}
	window := a.Window
	if window <= 0 {
		window = DefaultWindow
	}
	emit := func(e Event) {
		if a.OnEvent != nil {
			e.Time = now().UTC()
			a.OnEvent(e)
		}
	}
	start := now()
	msgs := cloneMessages(history)
	used := countAll(counter, msgs)
	res := Result{}
	var toolNames []string
	for _, s := range a.Tools.Specs() {
		toolNames = append(toolNames, s.Name)
	}
	emit(Event{Type: EventStart, Model: a.Model, Tools: toolNames, Policy: policyName(a.Policy), Window: window})
	for i := range msgs {
		emit(Event{Type: EventMessage, Message: &msgs[i], ContextTokens: used})
	}
	finish := func(stop string, err error) (Result, error) {
		res.Stop, res.Messages, res.Elapsed = stop, msgs, now().Sub(start)
		e := Event{Type: EventEnd, Stop: stop, Step: res.Steps, Usage: &res.Usage, ContextTokens: used,
			Millis: res.Elapsed.Milliseconds()}
		if err != nil {
			e.Error = err.Error()
		}
		emit(e)
		return res, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return finish(StopError, fmt.Errorf("agent: %w", err))
		}
		if res.Steps >= maxSteps {
			return finish(StopMaxSteps, nil)
		}
		if a.TokenBudget > 0 && res.Usage.Total() >= a.TokenBudget {
			return finish(StopTokenBudget, nil)
		}
		if a.Policy != nil && a.Policy.Fire(used, window) {
			rewritten, err := a.Policy.Rewrite(ctx, msgs)
			if err != nil {
				return finish(StopError, fmt.Errorf("agent: context policy %s: %w", policyName(a.Policy), err))
			}
			if reflect.DeepEqual(rewritten, msgs) { // nothing left to drop
				if used >= window {
					return finish(StopContext, nil)
				}
			} else {
				before := used
				msgs = rewritten
				used = countAll(counter, msgs)
				res.Resets++
				slog.Debug("context reset", "policy", policyName(a.Policy), "before", before, "after", used)
				emit(Event{Type: EventReset, Step: res.Steps, Policy: policyName(a.Policy), TokensBefore: before,
					ContextTokens: used, Messages: cloneMessages(msgs)})
			}
		} else if used >= window {
			return finish(StopContext, nil)
		}

		t0 := now()
		resp, err := a.Client.Complete(ctx, Request{Model: a.Model, Messages: msgs, Tools: a.Tools.Specs(),
			MaxTokens: a.MaxTokens, Temperature: a.Temperature, TopP: a.TopP, Thinking: a.Thinking})
		if err != nil {
			return finish(StopError, fmt.Errorf("agent: step %d: %w", res.Steps+1, err))
		}
		res.Steps++
		res.Usage = res.Usage.Add(resp.Usage)
		m := resp.Message
		m.Role = RoleAssistant
		seen := map[string]bool{}
		for i := range m.ToolCalls {
			// Results are matched by id: give missing or repeated ids fresh ones.
			if id := m.ToolCalls[i].ID; id == "" || seen[id] {
				m.ToolCalls[i].ID = fmt.Sprintf("call_%d_%d", res.Steps, i)
			}
			seen[m.ToolCalls[i].ID] = true
		}
		msgs = append(msgs, m)
		if resp.Usage.Total() > 0 {
			used = resp.Usage.Total()
		} else {
			used = countAll(counter, msgs)
		}
		u := resp.Usage
		emit(Event{Type: EventMessage, Step: res.Steps, Message: &msgs[len(msgs)-1], Usage: &u,
			FinishReason: resp.FinishReason, ContextTokens: used, Millis: now().Sub(t0).Milliseconds()})

		if len(m.ToolCalls) == 0 {
			res.Answer = m.Content
			if resp.FinishReason == "length" {
				return finish(StopLength, nil)
			}
			return finish(StopAnswer, nil)
		}
		for _, r := range a.runTools(ctx, m.ToolCalls, now) {
			msgs = append(msgs, Message{Role: RoleTool, ToolCallID: r.call.ID, Name: r.call.Name, Content: r.content})
			used += counter.Count(msgs[len(msgs)-1])
			emit(Event{Type: EventMessage, Step: res.Steps, Message: &msgs[len(msgs)-1], IsError: r.isErr,
				ContextTokens: used, Millis: r.elapsed.Milliseconds()})
		}
	}
}

type toolResult struct {
	call    ToolCall
	content string
	isErr   bool
	elapsed time.Duration
}

// runTools runs calls, concurrently unless SequentialTools, and returns the
// results in call order.
func (a *Agent) runTools(ctx context.Context, calls []ToolCall, now func() time.Time) []toolResult {
	out := make([]toolResult, len(calls))
	run := func(i int) {
		t0 := now()
		content, isErr := a.Tools.Call(ctx, calls[i])
		out[i] = toolResult{calls[i], content, isErr, now().Sub(t0)}
	}
	if a.SequentialTools || len(calls) == 1 {
		for i := range calls {
			run(i)
		}
		return out
	}
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); run(i) }()
	}
	wg.Wait()
	return out
}
