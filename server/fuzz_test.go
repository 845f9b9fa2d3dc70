package server

import (
	"encoding/json"

	"github.com/dsv32/dsv32/chat"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzChatRequest feeds arbitrary bytes to the chat request decoder and the
// prompt builder: no panics, and every rejection is a 4xx OpenAI error
// that encodes.
func FuzzChatRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}`,
		`{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}], "stop": ["x", "y"], "n": 2}`,
		`{"model": "tiny", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "reasoning_content": "r", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": [1, 2.5, null]}"}}]}, {"role": "tool", "tool_call_id": "1", "content": "ok"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], "thinking": {"type": "enabled"}}`,
		`{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "f"}}, "chat_template_kwargs": {"thinking": true}, "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}`,
		`{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot", "seed": -5, "top_k": -1, "logprobs": true, "top_logprobs": 30}`,
		`{"model": 5}`, `[]`, `{`, ``, `null`, `{"messages": null}`,
	} {
		f.Add([]byte(seed))
	}
	s, _ := newTestServer(f, Config{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeChatRequest(data)
		if err == nil {
			_, err = s.prepareChat(req)
			if err == nil {
				return
			}
		}
		if err.Status < 400 || err.Status >= 500 || err.Message == "" {
			t.Fatalf("bad rejection %+v for %q", err, data)
		}
		w := httptest.NewRecorder()
		writeError(w, err)
		var body struct {
			Error *Error `json:"error"`
		}
		if jerr := json.Unmarshal(w.Body.Bytes(), &body); jerr != nil || body.Error == nil || w.Code != err.Status {
			t.Fatalf("error response %d %q does not decode: %v", w.Code, w.Body, jerr)
		}
	})
}

// FuzzSSEFraming: whatever the model generates, the stream stays valid
// server-sent events whose chunks put back together the plain message.
func FuzzSSEFraming(f *testing.F) {
	f.Add("Hello\n\ndata: x\r\n<｜end▁of▁sentence｜>", false)
	f.Add("think</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", true)
	f.Add("\xff\xfe<think>", true)
	eng, tok, err := tinyRuntime()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string, thinking bool) {
		s, err := New(eng, tok, Config{ModelName: testModel, Thinking: thinking, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fakeRun(s, text+"<｜end▁of▁sentence｜>")
		body := `{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": true}`
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		st := accumulate(t, sseEvents(t, w.Body.Bytes()))
		plain, e := s.Chat(t.Context(), &ChatRequest{Model: testModel, Messages: []chat.Message{{Role: chat.RoleUser, Content: "x"}}}, nil)
		if e != nil {
			t.Fatal(e)
		}
		m := plain.Choices[0].Message
		if st.content[0] != m.Content || st.reasoning[0] != m.ReasoningContent || len(st.calls[0]) != len(m.ToolCalls) {
			t.Fatalf("stream (%q, %q, %d calls) != plain (%q, %q, %d calls)", st.reasoning[0], st.content[0], len(st.calls[0]),
				m.ReasoningContent, m.Content, len(m.ToolCalls))
		}
	})
}
