package server_test

import (
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/dsv32/dsv32/server"
)

// A server is an http.Handler: here on httptest, serving a tiny random
// model (its text is gibberish; the shape of the answer is what matters).
func Example() {
	eng, tok, err := server.TinyRuntime() // an engine.Engine and a tokenizer.BPE
	if err != nil {
		log.Fatal(err)
	}
	s, err := server.New(eng, tok, server.Config{ModelName: "tiny", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()

	body := `{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}],
		"max_tokens": 4, "temperature": 0, "thinking": {"type": "enabled"}}`
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var out server.ChatResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		log.Fatal(err)
	}
	u := out.Usage
	fmt.Println(resp.Status, out.Object, out.Choices[0].FinishReason)
	fmt.Println("completion tokens:", u.CompletionTokens, "reasoning tokens:", u.CompletionTokensDetails.ReasoningTokens)

	resp, err = http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model": "gpt-4o", "messages": []}`))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error server.Error }
	json.NewDecoder(resp.Body).Decode(&e)
	fmt.Println(resp.Status, *e.Error.Code)
	// Output:
	// 200 OK chat.completion length
	// completion tokens: 4 reasoning tokens: 4
	// 404 Not Found model_not_found
}
