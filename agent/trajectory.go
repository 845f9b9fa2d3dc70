package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Event types.
const (
	EventStart   = "start"         // model, tools, policy, window
	EventMessage = "message"       // one message appended to the history
	EventReset   = "context_reset" // a context policy rewrote the history
	EventEnd     = "end"           // stop reason, total usage, error
)

// Event is one line of a trajectory and one thing the terminal shows.
type Event struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Run  int       `json:"run,omitempty"`  // parallel runs: which one
	Step int       `json:"step,omitempty"` // model calls so far

	Message      *Message `json:"message,omitempty"`
	Usage        *Usage   `json:"usage,omitempty"` // message: this reply's; end: the run's total
	FinishReason string   `json:"finish_reason,omitempty"`
	IsError      bool     `json:"is_error,omitempty"` // tool message: an error result
	Millis       int64    `json:"ms,omitempty"`       // model call, tool call, or whole run

	ContextTokens int `json:"context_tokens,omitempty"` // tokens in use after this event
	TokensBefore  int `json:"tokens_before,omitempty"`  // context_reset

	Model    string    `json:"model,omitempty"`
	Tools    []string  `json:"tools,omitempty"`
	Policy   string    `json:"policy,omitempty"`
	Window   int       `json:"window,omitempty"`
	Messages []Message `json:"messages,omitempty"` // context_reset: the history after it

	Stop  string `json:"stop,omitempty"`
	Error string `json:"error,omitempty"`
}

// Trajectory writes events as JSON lines. It is safe for concurrent use
// (parallel runs may share one file); the first write error sticks.
type Trajectory struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

// NewTrajectory writes to w.
func NewTrajectory(w io.Writer) *Trajectory { return &Trajectory{w: w} }

// Record writes one event as one line.
func (t *Trajectory) Record(e Event) {
	b, err := json.Marshal(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return
	}
	if err != nil {
		t.err = fmt.Errorf("trajectory: encode %s event: %w", e.Type, err)
		return
	}
	if _, err := t.w.Write(append(b, '\n')); err != nil {
		t.err = fmt.Errorf("trajectory: %w", err)
	}
}

// Err is the first error Record met.
func (t *Trajectory) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// ReadTrajectory reads JSON-lines events; an error names the bad line.
func ReadTrajectory(r io.Reader) ([]Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	var evs []Event
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return evs, fmt.Errorf("trajectory line %d: %w", n, err)
		}
		if e.Type == "" {
			return evs, fmt.Errorf("trajectory line %d: event without a type", n)
		}
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		return evs, fmt.Errorf("trajectory: %w", err)
	}
	return evs, nil
}

// Printer shows events to a person: the terminal during a run, and
// `dsv32 agent replay` afterwards.
type Printer struct {
	W        io.Writer
	MaxChars int // per text block; 0: 2000
}

// Print writes one event.
func (p *Printer) Print(e Event) {
	max := p.MaxChars
	if max <= 0 {
		max = 2000
	}
	clip := func(s string) string { return Truncate(strings.TrimSpace(s), max) }
	prefix := ""
	if e.Run > 0 {
		prefix = fmt.Sprintf("[run %d] ", e.Run)
	}
	w := p.W
	switch e.Type {
	case EventStart:
		fmt.Fprintf(w, "%s== start model=%s tools=%s policy=%s window=%d\n", prefix, e.Model,
			strings.Join(e.Tools, ","), e.Policy, e.Window)
	case EventMessage:
		if e.Message == nil {
			return
		}
		m := e.Message
		switch m.Role {
		case RoleAssistant:
			fmt.Fprintf(w, "%s-- step %d: assistant (%d+%d tokens, %d ms, context %d)\n", prefix, e.Step,
				usageOf(e).PromptTokens, usageOf(e).CompletionTokens, e.Millis, e.ContextTokens)
			if m.ReasoningContent != "" {
				fmt.Fprintf(w, "%s[thinking] %s\n", prefix, clip(m.ReasoningContent))
			}
			if m.Content != "" {
				fmt.Fprintf(w, "%s%s\n", prefix, clip(m.Content))
			}
			for _, tc := range m.ToolCalls {
				fmt.Fprintf(w, "%s→ %s(%s) [%s]\n", prefix, tc.Name, clip(tc.Arguments), tc.ID)
			}
		case RoleTool:
			tag := "←"
			if e.IsError {
				tag = "← ERROR"
			}
			fmt.Fprintf(w, "%s%s %s [%s] (%d ms)\n%s\n", prefix, tag, m.Name, m.ToolCallID, e.Millis, clip(m.Content))
		default:
			fmt.Fprintf(w, "%s-- %s\n%s\n", prefix, m.Role, clip(m.Content))
		}
	case EventReset:
		fmt.Fprintf(w, "%s== context reset (%s) at step %d: %d → %d tokens, %d messages kept\n", prefix,
			e.Policy, e.Step, e.TokensBefore, e.ContextTokens, len(e.Messages))
	case EventEnd:
		u := usageOf(e)
		fmt.Fprintf(w, "%s== end: %s after %d steps, %d prompt + %d completion tokens, %.1fs\n", prefix, e.Stop,
			e.Step, u.PromptTokens, u.CompletionTokens, float64(e.Millis)/1000)
		if e.Error != "" {
			fmt.Fprintf(w, "%serror: %s\n", prefix, e.Error)
		}
	}
}

func usageOf(e Event) Usage {
	if e.Usage == nil {
		return Usage{}
	}
	return *e.Usage
}
