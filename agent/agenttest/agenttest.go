// Package agenttest provides a scripted OpenAI-compatible endpoint for tests,
// in the style of net/http/httptest: it answers POST /v1/chat/completions
// with replies from a script, plain or as an SSE stream (whichever the
// request asks for), and records every request body.
//
// It is not a model and does not check what it is sent beyond decoding it;
// tests assert on the recorded requests.
package agenttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/dsv32/dsv32/agent"
)

// Reply is one scripted reply.
type Reply struct {
	Reasoning string
	Content   string
	ToolCalls []agent.ToolCall
	Finish    string      // "": tool_calls when there are calls, else stop
	Usage     agent.Usage // reported as is
	Status    int         // non-zero: answer with this HTTP status and Content as the error message
}

// Request is a recorded request, decoded loosely so tests can see exactly
// which fields were sent.
type Request struct {
	Raw      json.RawMessage
	Model    string           `json:"model"`
	Stream   bool             `json:"stream"`
	Messages []map[string]any `json:"messages"`
	Tools    []map[string]any `json:"tools"`
	Thinking map[string]any   `json:"thinking"`
}

// Server is a scripted endpoint.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	script   func(n int, req Request) Reply
	requests []Request
}

// NewServer answers the n-th request with replies[n]; past the end it
// answers HTTP 500.
func NewServer(replies ...Reply) *Server {
	return NewFuncServer(func(n int, _ Request) Reply {
		if n >= len(replies) {
			return Reply{Status: http.StatusInternalServerError, Content: fmt.Sprintf("script has %d replies, request %d", len(replies), n+1)}
		}
		return replies[n]
	})
}

// NewFuncServer answers request n (from 0) with script(n, req).
func NewFuncServer(script func(n int, req Request) Reply) *Server {
	s := &Server{script: script}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req Request
	if err := json.NewDecoder(r.Body).Decode(&req.Raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := json.Unmarshal(req.Raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	rep := s.script(n, req)
	if rep.Status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.Status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": rep.Content, "type": "scripted"}})
		return
	}
	finish := rep.Finish
	if finish == "" {
		finish = "stop"
		if len(rep.ToolCalls) > 0 {
			finish = "tool_calls"
		}
	}
	usage := map[string]any{"prompt_tokens": rep.Usage.PromptTokens, "completion_tokens": rep.Usage.CompletionTokens,
		"total_tokens": rep.Usage.Total()}
	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": rep.Content}
		if rep.Reasoning != "" {
			msg["reasoning_content"] = rep.Reasoning
		}
		if len(rep.ToolCalls) > 0 {
			msg["tool_calls"] = wireCalls(rep.ToolCalls)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": fmt.Sprintf("chatcmpl-%d", n), "object": "chat.completion",
			"model": req.Model, "choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
			"usage": usage})
		return
	}
	// Stream: reasoning, then content, then tool calls, each in two
	// fragments where possible; then finish; then usage; then [DONE].
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(delta map[string]any, fin any) {
		chunk := map[string]any{"id": fmt.Sprintf("chatcmpl-%d", n), "object": "chat.completion.chunk",
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": fin}}}
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	send(map[string]any{"role": "assistant"}, nil)
	for _, part := range halves(rep.Reasoning) {
		send(map[string]any{"reasoning_content": part}, nil)
	}
	for _, part := range halves(rep.Content) {
		send(map[string]any{"content": part}, nil)
	}
	for i, tc := range rep.ToolCalls {
		send(map[string]any{"tool_calls": []any{map[string]any{"index": i, "id": tc.ID, "type": "function",
			"function": map[string]any{"name": tc.Name, "arguments": ""}}}}, nil)
		for _, part := range halves(tc.Arguments) {
			send(map[string]any{"tool_calls": []any{map[string]any{"index": i,
				"function": map[string]any{"arguments": part}}}}, nil)
		}
	}
	send(map[string]any{}, finish)
	b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("chatcmpl-%d", n), "choices": []any{}, "usage": usage})
	fmt.Fprintf(w, ": keep-alive\n\ndata: %s\n\ndata: [DONE]\n\n", b)
}

func wireCalls(calls []agent.ToolCall) []any {
	var out []any
	for _, tc := range calls {
		out = append(out, map[string]any{"id": tc.ID, "type": "function",
			"function": map[string]any{"name": tc.Name, "arguments": tc.Arguments}})
	}
	return out
}

// halves splits s in two at a rune boundary; "" gives nothing.
func halves(s string) []string {
	if s == "" {
		return nil
	}
	r := []rune(s)
	if len(r) < 2 {
		return []string{s}
	}
	return []string{string(r[:len(r)/2]), string(r[len(r)/2:])}
}
