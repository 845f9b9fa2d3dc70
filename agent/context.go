package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
)

// TokenCounter estimates the tokens a message takes in the prompt.
type TokenCounter interface {
	Count(m Message) int
}

// CounterFunc adapts a function to TokenCounter.
type CounterFunc func(Message) int

// Count calls f.
func (f CounterFunc) Count(m Message) int { return f(m) }

// Estimate is the default TokenCounter: about four bytes per token plus a few
// tokens of framing per message and per tool call. It is cheap and biased
// high for code and CJK text less than for English; inject a tokenizer-backed
// counter where it matters.
var Estimate = CounterFunc(func(m Message) int {
	n := len(m.Content) + len(m.ReasoningContent)
	for _, tc := range m.ToolCalls {
		n += len(tc.Name) + len(tc.Arguments) + 40
	}
	return (n+3)/4 + 4
})

func countAll(c TokenCounter, msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += c.Count(m)
	}
	return n
}

// ContextPolicy manages a context that is about to overflow (agent.md §4).
// Fire decides from the tokens in use and the window; Rewrite returns the new
// history. A rewrite always removes whole tool rounds (an assistant message
// with calls and all its results), so no orphan tool message is left.
type ContextPolicy interface {
	Fire(used, window int) bool
	Rewrite(ctx context.Context, msgs []Message) ([]Message, error)
}

// DefaultThreshold is the share of the window at which policies fire.
const DefaultThreshold = 0.8

// Threshold fires when used tokens exceed its share of the window (0 means
// DefaultThreshold). Policies embed it.
type Threshold float64

// Fire reports whether used > share × window.
func (t Threshold) Fire(used, window int) bool {
	share := float64(t)
	if share <= 0 {
		share = DefaultThreshold
	}
	return window > 0 && float64(used) > share*float64(window)
}

// DiscardToolHistory drops the oldest Fraction of tool rounds (rounded up):
// 0.75 is the paper's Discard-75%, 1 is Discard-all. System, user and
// tool-free assistant messages are kept, as are the newest rounds.
type DiscardToolHistory struct {
	Threshold
	Fraction float64
}

// Discard returns a DiscardToolHistory at the default threshold.
func Discard(fraction float64) *DiscardToolHistory { return &DiscardToolHistory{Fraction: fraction} }

func (p *DiscardToolHistory) String() string {
	if p.Fraction >= 1 {
		return "discard-all"
	}
	return fmt.Sprintf("discard%d", int(math.Round(p.Fraction*100)))
}

// round is one tool round: msgs[start:end] is an assistant message with tool
// calls and the tool messages that follow it.
type round struct{ start, end int }

func toolRounds(msgs []Message) []round {
	var rs []round
	for i := 0; i < len(msgs); i++ {
		if msgs[i].Role != RoleAssistant || len(msgs[i].ToolCalls) == 0 {
			continue
		}
		j := i + 1
		for j < len(msgs) && msgs[j].Role == RoleTool {
			j++
		}
		rs = append(rs, round{i, j})
		i = j - 1
	}
	return rs
}

// Rewrite drops the oldest rounds.
func (p *DiscardToolHistory) Rewrite(_ context.Context, msgs []Message) ([]Message, error) {
	if p.Fraction <= 0 || p.Fraction > 1 {
		return nil, fmt.Errorf("discard: fraction %v outside (0, 1]", p.Fraction)
	}
	rs := toolRounds(msgs)
	drop := int(math.Ceil(p.Fraction*float64(len(rs)) - 1e-9))
	dropped := make([]bool, len(msgs))
	for _, r := range rs[:drop] {
		for i := r.start; i < r.end; i++ {
			dropped[i] = true
		}
	}
	var out []Message
	for i, m := range msgs {
		if !dropped[i] {
			out = append(out, m)
		}
	}
	return cloneMessages(out), nil
}

// DefaultSummaryPrompt asks for the summary that Summary restarts from.
const DefaultSummaryPrompt = "Your context is nearly full and will be reset. Summarise your progress on the task so far: " +
	"what you have found (with exact values, names and sources), what you have ruled out, and what remains to do. " +
	"Write only the summary."

// Summary asks a model to summarise the trajectory and restarts the rollout
// from the system prompt and the question, with the summary appended to the
// question. Messages before the last user message are kept without their tool
// rounds. It is the paper's least efficient policy, kept for comparison.
type Summary struct {
	Threshold
	Client    Client // the summariser, often the agent's own endpoint
	Model     string
	Prompt    string // "": DefaultSummaryPrompt
	MaxTokens int
}

func (p *Summary) String() string { return "summary" }

// SummaryHeader introduces the summary appended to the question.
const SummaryHeader = "\n\n## Progress so far\nAn earlier attempt at this task ran out of context. Its summary:\n\n"

// Rewrite summarises and restarts.
func (p *Summary) Rewrite(ctx context.Context, msgs []Message) ([]Message, error) {
	if p.Client == nil {
		return nil, errors.New("summary: no summariser client")
	}
	l := lastUser(msgs)
	if l < 0 {
		return nil, errors.New("summary: history has no user message")
	}
	prompt := p.Prompt
	if prompt == "" {
		prompt = DefaultSummaryPrompt
	}
	req := Request{Model: p.Model, MaxTokens: p.MaxTokens,
		Messages: append(cloneMessages(msgs), Message{Role: RoleUser, Content: prompt})}
	// Tool results must still follow their calls; the appended user message
	// closes the trajectory, and no tools are offered, so the reply is text.
	resp, err := p.Client.Complete(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	summary := strings.TrimSpace(resp.Message.Content)
	if summary == "" {
		return nil, errors.New("summary: the summariser returned an empty summary")
	}
	head := msgs[:l+1]
	kept, err := Discard(1).Rewrite(ctx, head)
	if err != nil {
		return nil, err
	}
	kept[len(kept)-1].Content += SummaryHeader + summary
	return kept, nil
}

// policyName names a policy for trajectories.
func policyName(p ContextPolicy) string {
	if p == nil {
		return "none"
	}
	if s, ok := p.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", p)
}
