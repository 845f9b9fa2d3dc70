package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// HTTPClient is a Client for any OpenAI-compatible endpoint: it POSTs to
// {BaseURL}/v1/chat/completions, plain or as an SSE stream.
//
// It sends reasoning_content on every assistant message (the pass-back rule,
// agent.md §3) and leaves the retention rule to the server.
type HTTPClient struct {
	BaseURL string       // e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted)
	APIKey  string       // sent as a bearer token when set
	HTTP    *http.Client // nil: http.DefaultClient
	Stream  bool         // use SSE streaming
	// OnDelta, when set with Stream, sees each fragment as it arrives: for the
	// terminal, not for the history.
	OnDelta func(Delta)
	Retries int           // extra attempts after a network error, 429 or 5xx
	Backoff time.Duration // first retry delay, doubled each time; 0: 500ms
	Timeout time.Duration // per attempt, streaming included; 0: none beyond ctx
}

// Delta is one streamed fragment: reasoning, content, or a piece of a tool
// call (Index names the call; Name arrives once, Arguments in pieces).
type Delta struct {
	Reasoning string
	Content   string
	ToolCall  *ToolCall
	Index     int
}

// The wire structs: OpenAI chat completions plus DeepSeek's reasoning_content
// and thinking fields. They are ours; the server package has its own.
type (
	wireRequest struct {
		Model         string         `json:"model"`
		Messages      []wireMessage  `json:"messages"`
		Tools         []wireTool     `json:"tools,omitempty"`
		MaxTokens     int            `json:"max_tokens,omitempty"`
		Temperature   *float64       `json:"temperature,omitempty"`
		TopP          *float64       `json:"top_p,omitempty"`
		Stream        bool           `json:"stream,omitempty"`
		StreamOptions *streamOptions `json:"stream_options,omitempty"`
		Thinking      *wireThinking  `json:"thinking,omitempty"`
	}
	streamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	}
	wireThinking struct {
		Type string `json:"type"` // enabled | disabled
	}
	wireTool struct {
		Type     string   `json:"type"`
		Function ToolSpec `json:"function"`
	}
	wireMessage struct {
		Role             string         `json:"role,omitempty"`
		Content          *string        `json:"content"`
		ReasoningContent *string        `json:"reasoning_content,omitempty"`
		ToolCalls        []wireToolCall `json:"tool_calls,omitempty"`
		ToolCallID       string         `json:"tool_call_id,omitempty"`
	}
	wireToolCall struct {
		Index    *int         `json:"index,omitempty"` // stream deltas only
		ID       string       `json:"id,omitempty"`
		Type     string       `json:"type,omitempty"`
		Function wireFunction `json:"function"`
	}
	wireFunction struct {
		Name      string    `json:"name,omitempty"`
		Arguments argString `json:"arguments"`
	}
	wireResponse struct {
		Choices []wireChoice `json:"choices"`
		Usage   *Usage       `json:"usage"`
		Error   *wireError   `json:"error"`
	}
	wireChoice struct {
		Index        int          `json:"index"`
		Message      *wireMessage `json:"message"`
		Delta        *wireMessage `json:"delta"`
		FinishReason *string      `json:"finish_reason"`
	}
	wireError struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	}
)

// argString is a tool call's arguments: a JSON string on the OpenAI wire.
// Some servers send the object itself; it is accepted and kept as its text.
type argString string

func (a *argString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = argString(s)
		return nil
	}
	if string(b) == "null" {
		*a = ""
		return nil
	}
	*a = argString(b)
	return nil
}

// toWire converts a Request to its JSON body.
func toWire(req Request, stream bool) wireRequest {
	w := wireRequest{Model: req.Model, MaxTokens: req.MaxTokens, Temperature: req.Temperature, TopP: req.TopP}
	for _, m := range req.Messages {
		content := m.Content
		wm := wireMessage{Role: m.Role, Content: &content, ToolCallID: m.ToolCallID}
		if m.Role == RoleAssistant {
			r := m.ReasoningContent // always sent, even empty (agent.md §3)
			wm.ReasoningContent = &r
			for _, tc := range m.ToolCalls {
				args := tc.Arguments
				if strings.TrimSpace(args) == "" {
					args = "{}"
				}
				wm.ToolCalls = append(wm.ToolCalls, wireToolCall{ID: tc.ID, Type: "function",
					Function: wireFunction{Name: tc.Name, Arguments: argString(args)}})
			}
		}
		w.Messages = append(w.Messages, wm)
	}
	for _, t := range req.Tools {
		w.Tools = append(w.Tools, wireTool{Type: "function", Function: t})
	}
	if req.Thinking != nil {
		w.Thinking = &wireThinking{Type: "disabled"}
		if *req.Thinking {
			w.Thinking.Type = "enabled"
		}
	}
	if stream {
		w.Stream = true
		w.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	return w
}

// fromWire converts a response message to ours.
func fromWire(m *wireMessage) Message {
	out := Message{Role: RoleAssistant}
	if m == nil {
		return out
	}
	if m.Content != nil {
		out.Content = *m.Content
	}
	if m.ReasoningContent != nil {
		out.ReasoningContent = *m.ReasoningContent
	}
	for _, tc := range m.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: string(tc.Function.Arguments)})
	}
	return out
}

func (c *HTTPClient) url() string {
	base := strings.TrimRight(c.BaseURL, "/")
	if strings.HasSuffix(base, "/v1") {
		return base + "/chat/completions"
	}
	return base + "/v1/chat/completions"
}

// Complete sends req and returns the assistant's reply.
func (c *HTTPClient) Complete(ctx context.Context, req Request) (Response, error) {
	body, err := json.Marshal(toWire(req, c.Stream))
	if err != nil {
		return Response{}, fmt.Errorf("chat completions: encode request: %w", err)
	}
	backoff := c.Backoff
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	for attempt := 0; ; attempt++ {
		resp, retry, err := c.once(ctx, body)
		if err == nil || !retry || attempt >= c.Retries || ctx.Err() != nil {
			return resp, err
		}
		slog.Warn("chat completions: retrying", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return Response{}, fmt.Errorf("chat completions: %w", ctx.Err())
		case <-time.After(backoff << attempt):
		}
	}
}

// once makes one attempt; retry says whether another could succeed.
func (c *HTTPClient) once(ctx context.Context, body []byte) (Response, bool, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(), bytes.NewReader(body))
	if err != nil {
		return Response{}, false, fmt.Errorf("chat completions: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	if c.Stream {
		hreq.Header.Set("Accept", "text/event-stream")
	}
	if c.APIKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	hresp, err := hc.Do(hreq)
	if err != nil {
		return Response{}, true, fmt.Errorf("chat completions: %w", err)
	}
	defer hresp.Body.Close()
	if hresp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(hresp.Body, 4096))
		var we wireResponse
		if json.Unmarshal(msg, &we) == nil && we.Error != nil {
			msg = []byte(we.Error.Message)
		}
		retry := hresp.StatusCode == http.StatusTooManyRequests || hresp.StatusCode >= 500
		return Response{}, retry, fmt.Errorf("chat completions: HTTP %d: %s", hresp.StatusCode, strings.TrimSpace(string(msg)))
	}
	if c.Stream {
		r, err := ReadStream(hresp.Body, c.OnDelta)
		if err != nil {
			return Response{}, false, fmt.Errorf("chat completions: %w", err)
		}
		return r, false, nil
	}
	var wr wireResponse
	if err := json.NewDecoder(io.LimitReader(hresp.Body, 64<<20)).Decode(&wr); err != nil {
		return Response{}, false, fmt.Errorf("chat completions: decode response: %w", err)
	}
	if wr.Error != nil {
		return Response{}, false, fmt.Errorf("chat completions: %s", wr.Error.Message)
	}
	if len(wr.Choices) == 0 {
		return Response{}, false, errors.New("chat completions: response has no choices")
	}
	ch := wr.Choices[0]
	out := Response{Message: fromWire(ch.Message)}
	if ch.FinishReason != nil {
		out.FinishReason = *ch.FinishReason
	}
	if wr.Usage != nil {
		out.Usage = *wr.Usage
	}
	return out, false, nil
}
