package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsv32/dsv32/engine"
	"github.com/openai/openai-go/v3"
)

const testModel = "tiny"

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupBinary()
	if tinyRoot != "" {
		os.RemoveAll(tinyRoot)
	}
	os.Exit(code)
}

// newTestServer serves the tiny model on an httptest server.
func newTestServer(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	eng, tok, err := tinyRuntime()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ModelName == "" {
		cfg.ModelName = testModel
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	s, err := New(eng, tok, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts
}

// post sends a JSON body (a string is sent as is) and returns the status and body.
func post(t testing.TB, url string, body any) (int, []byte) {
	t.Helper()
	data, ok := body.(string)
	if !ok {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		data = string(b)
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// sseEvents splits a server-sent event stream into its data payloads and
// checks the framing: "data: " lines, blank-line separated, [DONE] last.
func sseEvents(t testing.TB, body []byte) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("SSE line %q does not start with \"data: \"", line)
		}
		events = append(events, data)
	}
	if len(events) == 0 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", body)
	}
	return events[:len(events)-1]
}

func userMsg(text string) []map[string]any {
	return []map[string]any{{"role": "user", "content": text}}
}

func decode[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, data)
	}
	return v
}

// streamedChat accumulates a streamed chat completion into per-choice
// messages and finish reasons, checking the chunk order on the way.
type streamed struct {
	reasoning, content map[int]string
	calls              map[int][]ChunkToolCall
	finish             map[int]string
	usage              *Usage
	logprobs           map[int]int
}

func accumulate(t testing.TB, events []string) streamed {
	t.Helper()
	st := streamed{reasoning: map[int]string{}, content: map[int]string{}, calls: map[int][]ChunkToolCall{},
		finish: map[int]string{}, logprobs: map[int]int{}}
	roles := map[int]bool{}
	for i, ev := range events {
		c := decode[ChatChunk](t, []byte(ev))
		if c.Object != "chat.completion.chunk" || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Model != testModel {
			t.Fatalf("chunk %d: bad header %+v", i, c)
		}
		if c.Usage != nil {
			if len(c.Choices) != 0 || i != len(events)-1 {
				t.Fatalf("usage chunk %d of %d has %d choices", i, len(events), len(c.Choices))
			}
			st.usage = c.Usage
		}
		for _, ch := range c.Choices {
			if _, done := st.finish[ch.Index]; done {
				t.Fatalf("chunk %d: choice %d continues after its finish_reason", i, ch.Index)
			}
			if ch.Delta.Role == "assistant" {
				roles[ch.Index] = true
			} else if !roles[ch.Index] {
				t.Fatalf("chunk %d: choice %d has a delta before its role", i, ch.Index)
			}
			if ch.Delta.ReasoningContent != nil {
				if st.content[ch.Index] != "" || len(st.calls[ch.Index]) > 0 {
					t.Fatalf("chunk %d: reasoning after content", i)
				}
				st.reasoning[ch.Index] += *ch.Delta.ReasoningContent
			}
			if ch.Delta.Content != nil {
				st.content[ch.Index] += *ch.Delta.Content
			}
			st.calls[ch.Index] = append(st.calls[ch.Index], ch.Delta.ToolCalls...)
			if ch.Logprobs != nil {
				st.logprobs[ch.Index] += len(ch.Logprobs.Content)
			}
			if ch.FinishReason != nil {
				st.finish[ch.Index] = *ch.FinishReason
			}
		}
	}
	return st
}

func TestChatCompletion(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	status, body := post(t, ts.URL+"/v1/chat/completions", map[string]any{
		"model": testModel, "messages": userMsg("Hello"), "max_tokens": 8, "seed": 1, "n": 2})
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	resp := decode[ChatResponse](t, body)
	if resp.Object != "chat.completion" || !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Model != testModel || resp.Created == 0 {
		t.Errorf("bad header: %+v", resp)
	}
	if len(resp.Choices) != 2 {
		t.Fatalf("%d choices, want 2", len(resp.Choices))
	}
	completion := 0
	for i, c := range resp.Choices {
		if c.Index != i || c.Message.Role != "assistant" {
			t.Errorf("choice %d: index %d role %q", i, c.Index, c.Message.Role)
		}
		if c.FinishReason != "length" && c.FinishReason != "stop" {
			t.Errorf("choice %d: finish_reason %q", i, c.FinishReason)
		}
		if c.Message.ReasoningContent != "" {
			t.Errorf("choice %d: reasoning %q outside thinking mode", i, c.Message.ReasoningContent)
		}
	}
	u := resp.Usage
	eng, tok, _ := tinyRuntime()
	_ = eng
	prompt := len(tok.Encode("<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜></think>"))
	if u == nil || u.PromptTokens != prompt || u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.CompletionTokens < 2 || u.CompletionTokens > 16 {
		t.Errorf("usage %+v; want %d prompt tokens and 2..16 completion tokens", u, prompt)
	}
	for _, c := range resp.Choices {
		completion += len(c.Message.Content)
	}
	t.Logf("usage %+v, first choice %q", *u, resp.Choices[0].Message.Content)
}

// TestStreamMatchesPlain: a streamed completion is the plain one, chunk by
// chunk, for the same seed; and seeds make generations repeatable.
func TestStreamMatchesPlain(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	for _, thinking := range []bool{false, true} {
		t.Run(fmt.Sprintf("thinking=%v", thinking), func(t *testing.T) {
			req := map[string]any{"model": testModel, "messages": userMsg("Say hi"), "max_tokens": 12,
				"seed": 42, "temperature": 0.9, "logprobs": true, "top_logprobs": 3,
				"thinking": map[string]string{"type": map[bool]string{true: "enabled", false: "disabled"}[thinking]}}
			status, body := post(t, ts.URL+"/v1/chat/completions", req)
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			plain := decode[ChatResponse](t, body)
			_, again := post(t, ts.URL+"/v1/chat/completions", req)
			if a := decode[ChatResponse](t, again); !reflect.DeepEqual(a.Choices[0].Message, plain.Choices[0].Message) {
				t.Errorf("same seed, different messages:\n%+v\n%+v", plain.Choices[0].Message, a.Choices[0].Message)
			}
			lp := plain.Choices[0].Logprobs
			if lp == nil || len(lp.Content) != plain.Usage.CompletionTokens {
				t.Fatalf("logprobs for %d tokens, want %d", len(lp.Content), plain.Usage.CompletionTokens)
			}
			for _, e := range lp.Content {
				if len(e.TopLogprobs) != 3 || e.Logprob > 0 || len(e.Bytes) == 0 {
					t.Fatalf("bad logprob entry %+v", e)
				}
			}

			req["stream"] = true
			req["stream_options"] = map[string]any{"include_usage": true}
			status, body = post(t, ts.URL+"/v1/chat/completions", req)
			if status != 200 {
				t.Fatalf("stream status %d: %s", status, body)
			}
			st := accumulate(t, sseEvents(t, body))
			m := plain.Choices[0].Message
			if st.content[0] != m.Content || st.reasoning[0] != m.ReasoningContent || st.finish[0] != plain.Choices[0].FinishReason {
				t.Errorf("stream (%q, %q, %s) differs from plain (%q, %q, %s)", st.reasoning[0], st.content[0], st.finish[0],
					m.ReasoningContent, m.Content, plain.Choices[0].FinishReason)
			}
			if !reflect.DeepEqual(st.usage, plain.Usage) {
				t.Errorf("stream usage %+v, plain %+v", st.usage, plain.Usage)
			}
			if st.logprobs[0] != plain.Usage.CompletionTokens {
				t.Errorf("stream sent logprobs for %d tokens, want %d", st.logprobs[0], plain.Usage.CompletionTokens)
			}
		})
	}
}

// TestStopStrings: a stop string found in the text ends it right before
// the match, with finish_reason "stop", and cancels the generation.
func TestStopStrings(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	base := map[string]any{"model": testModel, "prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0}
	status, body := post(t, ts.URL+"/v1/completions", base)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	full := decode[CompletionResponse](t, body)
	text := full.Choices[0].Text
	if len(text) < 12 {
		t.Skipf("greedy text %q too short to cut", text)
	}
	stop := plainPiece(text)
	if stop == "" {
		t.Skipf("no plain three letters in %q", text)
	}
	want := text[:strings.Index(text, stop)]
	for _, stream := range []bool{false, true} {
		req := map[string]any{"model": testModel, "prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0,
			"stop": []string{"\x00never", stop}, "stream": stream}
		status, body := post(t, ts.URL+"/v1/completions", req)
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		var got, finish string
		if stream {
			for _, ev := range sseEvents(t, body) {
				c := decode[CompletionResponse](t, []byte(ev))
				got += c.Choices[0].Text
				if c.Choices[0].FinishReason != nil {
					finish = *c.Choices[0].FinishReason
				}
			}
		} else {
			r := decode[CompletionResponse](t, body)
			got, finish = r.Choices[0].Text, *r.Choices[0].FinishReason
			if r.Usage.CompletionTokens >= full.Usage.CompletionTokens {
				t.Errorf("stopped after %d tokens, the full text took %d", r.Usage.CompletionTokens, full.Usage.CompletionTokens)
			}
		}
		if got != want || finish != "stop" {
			t.Errorf("stream=%v stop %q: got %q (%s), want %q (stop); full %q", stream, stop, got, finish, want, text)
		}
	}
	// The same through chat, with a single string.
	req := map[string]any{"model": testModel, "messages": userMsg("Hi"), "max_tokens": 24, "temperature": 0}
	_, body = post(t, ts.URL+"/v1/chat/completions", req)
	content := decode[ChatResponse](t, body).Choices[0].Message.Content
	if stop := plainPiece(content); stop != "" {
		req["stop"] = stop
		_, body = post(t, ts.URL+"/v1/chat/completions", req)
		r := decode[ChatResponse](t, body)
		if want := content[:strings.Index(content, stop)]; r.Choices[0].Message.Content != want || r.Choices[0].FinishReason != "stop" {
			t.Errorf("chat stop %q: got %q (%s), want %q", stop, r.Choices[0].Message.Content, r.Choices[0].FinishReason, want)
		}
	}
}

// plainPiece returns three ASCII letters or spaces from the second half of
// text, to use as a stop string.
func plainPiece(text string) string {
	isPlain := func(c byte) bool { return c == ' ' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
	for i := len(text) / 3; i+3 <= len(text); i++ {
		if isPlain(text[i]) && isPlain(text[i+1]) && isPlain(text[i+2]) {
			return text[i : i+3]
		}
	}
	return ""
}

func TestCompletions(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	_, tok, _ := tinyRuntime()
	ids := tok.Encode("Hello, world")
	status, body := post(t, ts.URL+"/v1/completions", map[string]any{"model": testModel,
		"prompt": [][]int{ids, ids[:2]}, "max_tokens": 5, "logprobs": 2, "n": 2, "seed": 3})
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	r := decode[CompletionResponse](t, body)
	if len(r.Choices) != 4 || r.Object != "text_completion" {
		t.Fatalf("%d choices (want 4), object %q", len(r.Choices), r.Object)
	}
	if r.Usage.PromptTokens != len(ids)+2 {
		t.Errorf("prompt tokens %d, want %d", r.Usage.PromptTokens, len(ids)+2)
	}
	n := 0
	for i, c := range r.Choices {
		if c.Index != i || c.Logprobs == nil || len(c.Logprobs.Tokens) != len(c.Logprobs.TokenLogprobs) || len(c.Logprobs.TopLogprobs[0]) > 2 {
			t.Errorf("choice %d: %+v", i, c)
		}
		n += len(c.Logprobs.Tokens)
	}
	if n != r.Usage.CompletionTokens {
		t.Errorf("logprobs for %d tokens, usage says %d", n, r.Usage.CompletionTokens)
	}
}

func TestErrors(t *testing.T) {
	_, ts := newTestServer(t, Config{MaxBodyBytes: 32 << 10})
	long := strings.Repeat("many words ", 5000)
	tool := func(fn map[string]any) map[string]any {
		return map[string]any{"model": testModel, "messages": userMsg("hi"), "tools": []any{map[string]any{"type": "function", "function": fn}}}
	}
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code, param        string
	}{
		{"malformed JSON", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": [`, 400, "invalid_json", ""},
		{"not an object", "POST", "/v1/chat/completions", `[1, 2]`, 400, "invalid_type", ""},
		{"empty body", "POST", "/v1/chat/completions", ``, 400, "invalid_json", ""},
		{"temperature type", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}`, 400, "invalid_type", "temperature"},
		{"content type", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": [{"role": "user", "content": 5}]}`, 400, "", "messages[0]"},
		{"role type", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": [{"role": 1, "content": "x"}]}`, 400, "invalid_type", "messages[0].role"},
		{"message not object", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": ["hi"]}`, 400, "invalid_type", "messages[0]"},
		{"stop type", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": 3}`, 400, "invalid_value", "stop"},
		{"thinking type", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "maybe"}}`, 400, "invalid_value", "thinking.type"},
		{"unknown model", "POST", "/v1/chat/completions", map[string]any{"model": "gpt-5", "messages": userMsg("hi")}, 404, "model_not_found", "model"},
		{"no model", "POST", "/v1/chat/completions", map[string]any{"messages": userMsg("hi")}, 400, "missing_required_parameter", "model"},
		{"no messages", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": []any{}}, 400, "invalid_value", "messages"},
		{"developer role", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": []any{map[string]any{"role": "developer", "content": "x"}}}, 400, "invalid_value", "messages[0].role"},
		{"bad role", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": []any{map[string]any{"role": "robot", "content": "x"}}}, 400, "invalid_value", "messages[0].role"},
		{"max_tokens overflow", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "max_tokens": 100000}, 400, "context_length_exceeded", "messages"},
		{"prompt overflow", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg(long[:20000])}, 400, "context_length_exceeded", "messages"},
		{"body too large", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg(long)}, 413, "request_too_large", ""},
		{"n zero", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "n": 0}, 400, "invalid_value", "n"},
		{"temperature range", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "temperature": 3}, 400, "invalid_value", "temperature"},
		{"max_completion_tokens", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "max_completion_tokens": 0}, 400, "invalid_value", "max_completion_tokens"},
		{"top_logprobs alone", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "top_logprobs": 2}, 400, "invalid_value", "top_logprobs"},
		{"logit_bias", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "logit_bias": map[string]int{"5": 1}}, 400, "invalid_value", "logit_bias"},
		{"tool name", "POST", "/v1/chat/completions", tool(map[string]any{"name": "bad name!"}), 400, "invalid_tools", "tools[0].function.name"},
		{"tool parameters", "POST", "/v1/chat/completions", tool(map[string]any{"name": "f", "parameters": "x"}), 400, "invalid_tools", "tools[0].function.parameters"},
		{"tool schema type", "POST", "/v1/chat/completions", tool(map[string]any{"name": "f", "parameters": map[string]any{"type": "string"}}), 400, "invalid_tools", "tools[0].function.parameters"},
		{"tool type", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "tools": []any{map[string]any{"type": "retrieval"}}}, 400, "invalid_tools", "tools[0].type"},
		{"tools not array", "POST", "/v1/chat/completions", `{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": {}}`, 400, "invalid_type", "tools"},
		{"tool_choice unknown", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "g"}}}, 400, "invalid_value", "tool_choice"},
		{"tool_choice value", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "tool_choice": "always"}, 400, "invalid_value", "tool_choice"},
		{"tool results missing", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": []any{
			map[string]any{"role": "user", "content": "x"},
			map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "a", "type": "function", "function": map[string]any{"name": "f", "arguments": "{}"}}}},
			map[string]any{"role": "user", "content": "y"}}}, 400, "invalid_value", "messages[1]"},
		{"bad arguments", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": []any{
			map[string]any{"role": "user", "content": "x"},
			map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "a", "type": "function", "function": map[string]any{"name": "f", "arguments": "{not json"}}}},
			map[string]any{"role": "tool", "tool_call_id": "a", "content": "r"}}}, 400, "invalid_value", "messages"},
		{"response_format", "POST", "/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "response_format": map[string]any{"type": "xml"}}, 400, "invalid_value", "response_format.type"},
		{"completion prompt type", "POST", "/v1/completions", `{"model": "tiny", "prompt": {"a": 1}}`, 400, "invalid_value", "prompt"},
		{"completion no prompt", "POST", "/v1/completions", map[string]any{"model": testModel}, 400, "missing_required_parameter", "prompt"},
		{"completion token range", "POST", "/v1/completions", map[string]any{"model": testModel, "prompt": []int{1, 99999}}, 400, "invalid_value", "prompt"},
		{"completion unknown model", "POST", "/v1/completions", map[string]any{"model": "x", "prompt": "a"}, 404, "model_not_found", "model"},
		{"completion echo", "POST", "/v1/completions", map[string]any{"model": testModel, "prompt": "a", "echo": true}, 400, "invalid_value", "echo"},
		{"completion overflow", "POST", "/v1/completions", map[string]any{"model": testModel, "prompt": "a", "max_tokens": 5000}, 400, "context_length_exceeded", "prompt"},
		{"wrong method", "GET", "/v1/chat/completions", nil, 405, "method_not_allowed", ""},
		{"wrong method models", "POST", "/v1/models", "{}", 405, "method_not_allowed", ""},
		{"unknown path", "GET", "/v2/nothing", nil, 404, "not_found", ""},
		{"unknown model card", "GET", "/v1/models/other", nil, 404, "model_not_found", "model"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			switch b := tc.body.(type) {
			case nil:
			case string:
				body = strings.NewReader(b)
			default:
				data, _ := json.Marshal(b)
				body = bytes.NewReader(data)
			}
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, body)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, data)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			var e struct {
				Error *struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(data, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not an OpenAI error: %s", data)
			}
			if tc.code != "" && (e.Error.Code == nil || *e.Error.Code != tc.code) {
				t.Errorf("code %v, want %q: %s", e.Error.Code, tc.code, data)
			}
			if tc.param != "" && (e.Error.Param == nil || !strings.HasPrefix(*e.Error.Param, tc.param)) {
				t.Errorf("param %v, want %q: %s", e.Error.Param, tc.param, data)
			}
			if tc.status == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
		})
	}
}

// TestRequestShapes: requests that must be accepted — DeepSeek's and vLLM's
// thinking switches, a tool round trip, an assistant message without
// reasoning in thinking mode, tool_choice values, content parts.
func TestRequestShapes(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	call := map[string]any{"id": "call_1", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city": "Paris"}`}}
	call2 := map[string]any{"id": "call_2", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city": "Rome"}`}}
	weather := map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "description": "Weather for a city.",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}
	roundTrip := []any{
		map[string]any{"role": "system", "content": "Be brief."},
		map[string]any{"role": "user", "content": "Weather in Paris and Rome?"},
		map[string]any{"role": "assistant", "content": "", "reasoning_content": "Call the tool twice.", "tool_calls": []any{call, call2}},
		// results out of order: paired by tool_call_id
		map[string]any{"role": "tool", "tool_call_id": "call_2", "content": "rain"},
		map[string]any{"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
	}
	cases := []struct {
		name       string
		req        map[string]any
		thinking   bool
		wantInText []string
	}{
		{"thinking object", map[string]any{"messages": userMsg("hi"), "thinking": map[string]any{"type": "enabled"}}, true, []string{"<think>"}},
		{"thinking bool", map[string]any{"messages": userMsg("hi"), "thinking": true}, true, nil},
		{"thinking disabled", map[string]any{"messages": userMsg("hi"), "thinking": map[string]any{"type": "disabled"}}, false, []string{"</think>"}},
		{"chat_template_kwargs", map[string]any{"messages": userMsg("hi"), "chat_template_kwargs": map[string]any{"thinking": true}}, true, nil},
		{"enable_thinking", map[string]any{"messages": userMsg("hi"), "chat_template_kwargs": map[string]any{"enable_thinking": true}}, true, nil},
		{"thinking wins", map[string]any{"messages": userMsg("hi"), "thinking": false, "chat_template_kwargs": map[string]any{"thinking": true}}, false, nil},
		{"tool round trip", map[string]any{"messages": roundTrip, "tools": []any{weather}, "thinking": true}, true,
			[]string{"<functions>", `<result>sunny</result>` + "\n" + `<result>rain</result>`, `<｜DSML｜invoke name="get_weather">`, "Call the tool twice.</think>"}},
		{"tool_choice none", map[string]any{"messages": userMsg("hi"), "tools": []any{weather}, "tool_choice": "none"}, false, nil},
		{"tool_choice named", map[string]any{"messages": userMsg("hi"), "tools": []any{weather}, "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}}, false, []string{"get_weather"}},
		{"tool_choice required", map[string]any{"messages": userMsg("hi"), "tools": []any{weather}, "tool_choice": "required"}, false, []string{"<functions>"}},
		{"missing reasoning", map[string]any{"messages": []any{
			map[string]any{"role": "user", "content": "x"},
			map[string]any{"role": "assistant", "tool_calls": []any{call}},
			map[string]any{"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
			map[string]any{"role": "assistant", "content": "It is sunny."}}, "thinking": true}, true, []string{"</think>It is sunny.<｜end▁of▁sentence｜>"}},
		{"content parts", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "a"}, map[string]any{"type": "text", "text": "b"}}}}}, false, []string{"a\nb"}},
		{"json schema", map[string]any{"messages": userMsg("hi"), "response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "x", "schema": map[string]any{"type": "object"}}}}, false, []string{"## Response Format"}},
		{"null fields", map[string]any{"messages": userMsg("hi"), "stop": nil, "tools": nil, "seed": nil, "n": nil}, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req["model"] = testModel
			data, _ := json.Marshal(tc.req)
			req, e := DecodeChatRequest(data)
			if e != nil {
				t.Fatal(e)
			}
			job, e := s.prepareChat(req)
			if e != nil {
				t.Fatal(e)
			}
			if job.thinking != tc.thinking {
				t.Errorf("thinking %v, want %v", job.thinking, tc.thinking)
			}
			ids := make([]int, len(job.prompt))
			for i, id := range job.prompt {
				ids[i] = int(id)
			}
			text := s.tok.Decode(ids)
			for _, want := range tc.wantInText {
				if !strings.Contains(text, want) {
					t.Errorf("prompt lacks %q:\n%s", want, text)
				}
			}
			if tc.name == "tool_choice none" && strings.Contains(text, "<functions>") {
				t.Errorf("tool_choice none still lists the tools")
			}
			end := map[bool]string{true: "<think>", false: "</think>"}[tc.thinking]
			if tc.name == "missing reasoning" { // the conversation ends with the assistant
				end = "<｜end▁of▁sentence｜>"
			}
			if !strings.HasSuffix(text, end) {
				t.Errorf("prompt ends %q", text[max(0, len(text)-20):])
			}
			tc.req["max_tokens"] = 3
			if status, body := post(t, ts.URL+"/v1/chat/completions", tc.req); status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
		})
	}
}

// TestDisconnectCancels: a client that goes away mid-stream frees its
// engine row.
func TestDisconnectCancels(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	body, _ := json.Marshal(map[string]any{"model": testModel, "messages": userMsg("Count"), "max_tokens": 3000, "stream": true, "temperature": 1})
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/chat/completions", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	for range 3 { // a few events: generation is under way
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.eng.Stats(); st.Running+st.Waiting == 0 {
		t.Fatalf("nothing running mid-stream: %+v", st)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := s.eng.Stats()
		if st.Running == 0 && st.Waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("generation still running 20 s after the client left: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConcurrent: parallel requests of every kind, one of them bad, all get
// their own right answer.
func TestConcurrent(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var status int
			var body []byte
			want := 200
			switch i % 4 {
			case 0:
				status, body = post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg(fmt.Sprint("hello ", i)), "max_tokens": 6 + i})
			case 1:
				status, body = post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("stream"), "max_tokens": 5, "stream": true})
				if status == 200 {
					accumulate(t, sseEvents(t, body))
				}
			case 2:
				status, body = post(t, ts.URL+"/v1/completions", map[string]any{"model": testModel, "prompt": "one two", "max_tokens": 4 + i, "n": 2})
			case 3:
				want = 400
				status, body = post(t, ts.URL+"/v1/chat/completions", `{"model": "tiny", "messages": 7}`)
			}
			if status != want {
				errs <- fmt.Errorf("request %d: status %d, want %d: %s", i, status, want, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestModelsHealthMetrics(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	get := func(path string) []byte {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", path, resp.StatusCode, data)
		}
		return data
	}
	models := decode[ModelList](t, get("/v1/models"))
	if len(models.Data) != 1 || models.Data[0].ID != testModel || models.Object != "list" || models.Data[0].Object != "model" {
		t.Errorf("models: %+v", models)
	}
	if card := decode[ModelCard](t, get("/v1/models/"+testModel)); card.ID != testModel {
		t.Errorf("model card %+v", card)
	}
	if h := decode[map[string]any](t, get("/health")); h["status"] != "ok" {
		t.Errorf("health %v", h)
	}
	post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("hi"), "max_tokens": 2})
	post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": "nope", "messages": userMsg("hi")})
	text := string(get("/metrics"))
	for _, want := range []string{
		`dsv32_http_requests_total{endpoint="chat",status="200"} 1`,
		`dsv32_http_requests_total{endpoint="chat",status="404"} 1`,
		"dsv32_queue_depth ", "dsv32_running ", "dsv32_cache_bytes ", "dsv32_cache_budget_bytes 4.294967296e+09",
		"dsv32_generated_tokens_total ", "dsv32_generated_tokens_per_second ", "dsv32_time_to_first_token_seconds_count",
		`dsv32_generations_total{finish_reason=`, "go_goroutines ",
		"dsv32_prefix_store_bytes ", "dsv32_prefix_store_hits_total ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// fakeRun replaces the engine with one that "generates" the tokens of
// given texts, one text per choice, ending with EOS.
func fakeRun(s *Server, texts ...string) {
	s.run = func(ctx context.Context, reqs []engine.Request, handle func(event) bool) {
		for i := range reqs {
			var toks []engine.Token
			for _, id := range s.tok.Encode(texts[i%len(texts)]) {
				toks = append(toks, engine.Token{ID: int32(id)})
			}
			n := 0
			for _, tk := range toks {
				n++
				if handle(event{choice: i, tok: tk}) {
					break
				}
			}
			handle(event{choice: i, final: true, res: &engine.Result{Finish: engine.FinishStop, Tokens: toks[:n]}})
		}
	}
}

// TestToolCallOutput: model text with a DSML tool block comes back as
// tool_calls, plainly and streamed; malformed output comes back as text.
func TestToolCallOutput(t *testing.T) {
	const dsml = "Let me check.\n\n<｜DSML｜function_calls>\n" +
		"<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n" +
		"<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n" +
		"<｜DSML｜invoke name=\"get_time\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>"
	cases := []struct {
		name, text         string
		thinking           bool
		reasoning, content string
		calls              []string // name(arguments)
		finish             string
	}{
		{"tool calls", dsml, false, "", "Let me check.", []string{`get_weather({"city": "Paris", "days": 3})`, `get_time({})`}, "tool_calls"},
		{"thinking tool calls", "I need the weather.</think>" + dsml, true, "I need the weather.", "Let me check.", []string{`get_weather({"city": "Paris", "days": 3})`, `get_time({})`}, "tool_calls"},
		{"plain", "Hello there.<｜end▁of▁sentence｜>", false, "", "Hello there.", nil, "stop"},
		{"special token in content", "Hi <｜User｜> there<｜end▁of▁sentence｜>", false, "", "Hi <｜User｜> there", nil, "stop"},
		{"no end of thinking", "still thinking", true, "still thinking", "", nil, "stop"},
		{"bad block", "Try.\n\n<｜DSML｜function_calls>\n<｜DSML｜oops>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>", false, "",
			"Try.\n\n<｜DSML｜function_calls>\n<｜DSML｜oops>\n</｜DSML｜function_calls>", nil, "stop"},
		{"bad second invoke", "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"a\">\n</｜DSML｜invoke>\n<｜DSML｜invoke nam=\"b\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>", false, "",
			"\n<｜DSML｜invoke nam=\"b\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", []string{"a({})"}, "tool_calls"},
	}
	eng, tok, err := tinyRuntime()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(eng, tok, Config{ModelName: testModel, Thinking: tc.thinking, Logger: quietLogger})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			fakeRun(s, tc.text)
			req := &ChatRequest{Model: testModel, Messages: decode[ChatRequest](t, []byte(`{"messages":[{"role":"user","content":"weather?"}]}`)).Messages}
			resp, e := s.Chat(context.Background(), req, nil)
			if e != nil {
				t.Fatal(e)
			}
			m := resp.Choices[0].Message
			var calls []string
			for _, c := range m.ToolCalls {
				if !strings.HasPrefix(c.ID, "call_") || c.Type != "function" {
					t.Errorf("call %+v lacks id or type", c)
				}
				calls = append(calls, c.Function.Name+"("+c.Function.Arguments+")")
			}
			if m.ReasoningContent != tc.reasoning || m.Content != tc.content || strings.Join(calls, ";") != strings.Join(tc.calls, ";") || resp.Choices[0].FinishReason != tc.finish {
				t.Errorf("got reasoning %q content %q calls %q finish %s\nwant reasoning %q content %q calls %q finish %s",
					m.ReasoningContent, m.Content, calls, resp.Choices[0].FinishReason, tc.reasoning, tc.content, tc.calls, tc.finish)
			}
			// Streamed, through the HTTP handler.
			ts := httptest.NewServer(s)
			defer ts.Close()
			status, body := post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": testModel, "messages": userMsg("weather?"), "stream": true})
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			st := accumulate(t, sseEvents(t, body))
			var scalls []string
			for k, c := range st.calls[0] {
				if c.Index != k || c.ID == "" || c.Type != "function" {
					t.Errorf("streamed call %d: %+v", k, c)
				}
				scalls = append(scalls, c.Function.Name+"("+c.Function.Arguments+")")
			}
			if st.reasoning[0] != tc.reasoning || st.content[0] != tc.content || strings.Join(scalls, ";") != strings.Join(tc.calls, ";") || st.finish[0] != tc.finish {
				t.Errorf("streamed reasoning %q content %q calls %q finish %s", st.reasoning[0], st.content[0], scalls, st.finish[0])
			}
			// The Go SDK's accumulator puts the streamed calls back together.
			client := goClient(ts.URL)
			stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
				Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather?")}})
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			var acalls []string
			for _, c := range acc.Choices[0].Message.ToolCalls {
				acalls = append(acalls, c.Function.Name+"("+c.Function.Arguments+")")
			}
			if strings.Join(acalls, ";") != strings.Join(tc.calls, ";") || acc.Choices[0].Message.Content != tc.content || string(acc.Choices[0].FinishReason) != tc.finish {
				t.Errorf("SDK accumulated content %q calls %q finish %s", acc.Choices[0].Message.Content, acalls, acc.Choices[0].FinishReason)
			}
		})
	}
}

func TestTextStream(t *testing.T) {
	_, tok, err := tinyRuntime()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		text  string
		stops []string
		want  string
		stop  bool
	}{
		{"hello world", nil, "hello world", false},
		{"hello world", []string{"wor"}, "hello ", true},
		{"hello world", []string{"xyz", "o w"}, "hell", true},
		{"hello world", []string{"world!"}, "hello world", false},
		{"hello world", []string{"d"}, "hello worl", true},
		{"héllo wörld", []string{"ö"}, "héllo w", true},
		{"hello", []string{""}, "hello", false},
	}
	for _, tc := range cases {
		ts := newTextStream(tok, tc.stops)
		var got string
		for _, id := range tok.Encode(tc.text) {
			got += ts.add(int32(id))
		}
		got += ts.flush()
		if got != tc.want || ts.stopped != tc.stop {
			t.Errorf("%q with stops %q: got %q (stopped %v), want %q (%v)", tc.text, tc.stops, got, ts.stopped, tc.want, tc.stop)
		}
	}
}

// TestConversationReusesItsHistory: a conversation's second turn takes the
// first turn's prompt and answer from the engine's cache (prefix reuse),
// through the chat template and the tokenizer, and reports it.
func TestConversationReusesItsHistory(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	msgs := []map[string]any{
		{"role": "system", "content": "You are a careful assistant. Answer briefly, and say so when you do not know."},
		{"role": "user", "content": "What is the capital of France?"},
	}
	status, body := post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": testModel, "messages": msgs, "max_tokens": 4, "temperature": 0})
	if status != 200 {
		t.Fatalf("first turn: status %d: %s", status, body)
	}
	first := decode[ChatResponse](t, body)
	before := s.eng.Stats().ReusedTokens
	msgs = append(msgs,
		map[string]any{"role": "assistant", "content": first.Choices[0].Message.Content},
		map[string]any{"role": "user", "content": "And of Italy?"})
	status, body = post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": testModel, "messages": msgs, "max_tokens": 4, "temperature": 0})
	if status != 200 {
		t.Fatalf("second turn: status %d: %s", status, body)
	}
	second := decode[ChatResponse](t, body)
	reused := s.eng.Stats().ReusedTokens - before
	if reused < int64(first.Usage.PromptTokens) {
		t.Errorf("the second turn reused %d prompt tokens, want at least the first turn's %d", reused, first.Usage.PromptTokens)
	}
	// OpenAI's usage.prompt_tokens_details.cached_tokens says so.
	if d := first.Usage.PromptTokensDetails; d == nil || d.CachedTokens != 0 {
		t.Errorf("first turn: prompt tokens details %+v, want 0 cached", d)
	}
	if d := second.Usage.PromptTokensDetails; d == nil || int64(d.CachedTokens) != reused {
		t.Errorf("second turn: prompt tokens details %+v, want %d cached", d, reused)
	}
}
