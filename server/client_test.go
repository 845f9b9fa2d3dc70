package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/respjson"
	"github.com/openai/openai-go/v3/shared"
)

// These tests run real clients — the official Go SDK and the openai npm
// package — against a real `dsv32 serve` process on loopback, serving the
// tiny model. The binary is built once, with -tags noxla (no cgo), and the
// process is shared by the tests and stopped by TestMain.

var (
	serveOnce sync.Once
	serveURL  string
	serveErr  error
	serveProc *exec.Cmd
	serveLog  lockedBuffer
	binPath   string
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	buildOnce sync.Once
	buildErr  error
)

// buildBinary builds cmd/dsv32 (once) into the tests' temporary root.
func buildBinary() (string, error) {
	buildOnce.Do(func() { binPath, buildErr = build() })
	return binPath, buildErr
}

func build() (string, error) {
	dir, err := tinyDir()
	if err != nil {
		return "", err
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..")
	bin := filepath.Join(filepath.Dir(dir), "dsv32")
	cmd := exec.Command("go", "build", "-tags", "noxla", "-o", bin, "./cmd/dsv32")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "GOMLX_NO_AUTO_INSTALL=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/dsv32: %v\n%s", err, out)
	}
	return bin, nil
}

// dsv32Serve starts `dsv32 serve` on a free port once and returns its URL.
func dsv32Serve(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the dsv32 binary")
	}
	serveOnce.Do(func() {
		serveURL, serveErr = startServe()
	})
	if serveErr != nil {
		t.Fatalf("dsv32 serve: %v\nlog:\n%s", serveErr, serveLog.String())
	}
	return serveURL
}

func startServe() (string, error) {
	bin, err := buildBinary()
	if err != nil {
		return "", err
	}
	dir, _ := tinyDir()
	cmd := exec.Command(bin, "serve", "--model", dir, "--addr", "127.0.0.1:0", "--served-model-name", testModel,
		"--max-batch", "8", "--max-context", "2048")
	cmd.Env = append(os.Environ(), "GOMLX_NO_AUTO_INSTALL=1", "GOMLX_BACKEND=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	serveProc = cmd
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg=listening addr=(http://\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			serveLog.Write([]byte(line + "\n"))
			if m := re.FindStringSubmatch(line); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	var url string
	select {
	case u, ok := <-found:
		if !ok {
			return "", errors.New("exited before listening")
		}
		url = u
	case <-time.After(2 * time.Minute):
		return "", errors.New("no listening line after 2 minutes")
	}
	for range 100 {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", errors.New("/health never answered 200")
}

// cleanupBinary stops the server process (TestMain calls it).
func cleanupBinary() {
	if serveProc != nil && serveProc.Process != nil {
		serveProc.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { serveProc.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			serveProc.Process.Kill()
		}
	}
}

func goClient(url string) openai.Client {
	return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

// extraString reads a string field the SDK does not know, such as
// DeepSeek's reasoning_content.
func extraString(fields map[string]respjson.Field, key string) string {
	var s string
	if f, ok := fields[key]; ok {
		json.Unmarshal([]byte(f.Raw()), &s)
	}
	return s
}

func TestGoSDK(t *testing.T) {
	url := dsv32Serve(t)
	client := goClient(url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != testModel {
			t.Errorf("models: %+v", page.Data)
		}
	})

	params := openai.ChatCompletionNewParams{
		Model:     testModel,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello!")},
		MaxTokens: openai.Int(10),
		Seed:      openai.Int(5),
	}
	var plain *openai.ChatCompletion
	t.Run("plain", func(t *testing.T) {
		var err error
		plain, err = client.Chat.Completions.New(ctx, params, option.WithJSONSet("thinking", map[string]string{"type": "enabled"}))
		if err != nil {
			t.Fatal(err)
		}
		c := plain.Choices[0]
		if plain.Object != "chat.completion" || c.Message.Role != "assistant" || plain.Usage.CompletionTokens == 0 ||
			plain.Usage.TotalTokens != plain.Usage.PromptTokens+plain.Usage.CompletionTokens {
			t.Errorf("bad completion: %s", plain.RawJSON())
		}
		if extraString(c.Message.JSON.ExtraFields, "reasoning_content") == "" && c.Message.Content == "" {
			t.Errorf("thinking mode, but neither reasoning_content nor content: %s", plain.RawJSON())
		}
	})

	t.Run("streamed", func(t *testing.T) {
		if plain == nil {
			t.Skip("plain failed")
		}
		p := params
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, p, option.WithJSONSet("thinking", map[string]string{"type": "enabled"}))
		var acc openai.ChatCompletionAccumulator
		var reasoning strings.Builder
		chunks := 0
		for stream.Next() {
			chunk := stream.Current()
			acc.AddChunk(chunk)
			chunks++
			for _, ch := range chunk.Choices {
				reasoning.WriteString(extraString(ch.Delta.JSON.ExtraFields, "reasoning_content"))
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if chunks < 3 {
			t.Errorf("only %d chunks", chunks)
		}
		got, want := acc.Choices[0].Message.Content, plain.Choices[0].Message.Content
		wantReasoning := extraString(plain.Choices[0].Message.JSON.ExtraFields, "reasoning_content")
		if wantReasoning == "" {
			t.Errorf("no reasoning_content in thinking mode: %s", plain.RawJSON())
		}
		if got != want || reasoning.String() != wantReasoning || string(acc.Choices[0].FinishReason) != string(plain.Choices[0].FinishReason) {
			t.Errorf("streamed (%q, %q) differs from plain (%q, %q) with the same seed", reasoning.String(), got, wantReasoning, want)
		}
		if acc.Usage.CompletionTokens != plain.Usage.CompletionTokens || acc.Usage.PromptTokens != plain.Usage.PromptTokens {
			t.Errorf("stream usage %+v, plain %+v", acc.Usage, plain.Usage)
		}
	})

	t.Run("cached prompt", func(t *testing.T) {
		// The same long prompt twice: the second takes all of it but the
		// last token from the cache, and says so in OpenAI's usage field.
		p := openai.ChatCompletionNewParams{
			Model: testModel,
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("You answer questions about the weather in one short sentence, and say when you do not know."),
				openai.UserMessage("Will it rain tomorrow?"),
			},
			MaxTokens: openai.Int(3),
		}
		var usage [2]openai.CompletionUsage
		for i := range usage {
			resp, err := client.Chat.Completions.New(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			usage[i] = resp.Usage
		}
		if got, want := usage[1].PromptTokensDetails.CachedTokens, usage[1].PromptTokens-1; got != want || usage[0].PromptTokensDetails.CachedTokens != 0 {
			t.Errorf("cached tokens %d then %d of %d, want 0 then %d", usage[0].PromptTokensDetails.CachedTokens, got, usage[1].PromptTokens, want)
		}
	})

	t.Run("tool round trip", func(t *testing.T) {
		assistant := openai.ChatCompletionAssistantMessageParam{
			ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
				ID:       "call_7",
				Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "get_weather", Arguments: `{"city": "Paris"}`},
			}}},
		}
		assistant.SetExtraFields(map[string]any{"reasoning_content": "I will look it up."})
		p := openai.ChatCompletionNewParams{
			Model: testModel,
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.UserMessage("Weather in Paris?"),
				{OfAssistant: &assistant},
				openai.ToolMessage("sunny, 21 degrees", "call_7"),
			},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
				Name: "get_weather", Description: openai.String("Weather for a city."),
				Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
			})},
			ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")},
			MaxTokens:  openai.Int(6),
		}
		resp, err := client.Chat.Completions.New(ctx, p, option.WithJSONSet("thinking", map[string]string{"type": "enabled"}))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Usage.PromptTokens < 100 {
			t.Errorf("tool round trip: %s", resp.RawJSON())
		}
		// Whatever the model says, any tool calls it makes have the wire shape.
		for _, c := range resp.Choices[0].Message.ToolCalls {
			if c.ID == "" || c.Type != "function" || !json.Valid([]byte(c.Function.Arguments)) {
				t.Errorf("bad tool call %+v", c)
			}
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		p := params
		p.Model = "gpt-4o"
		_, err := client.Chat.Completions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("error %v (%T), want *openai.Error", err, err)
		}
		if apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
			t.Errorf("got %d %q %q: %s", apiErr.StatusCode, apiErr.Code, apiErr.Param, apiErr.Message)
		}
	})

	t.Run("context overflow", func(t *testing.T) {
		p := params
		p.MaxTokens = openai.Int(100000)
		_, err := client.Chat.Completions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" {
			t.Fatalf("error %v, want 400 context_length_exceeded", err)
		}
		// Streamed requests fail the same way, before the stream starts.
		stream := client.Chat.Completions.NewStreaming(ctx, p)
		for stream.Next() {
		}
		if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" {
			t.Fatalf("stream error %v, want 400 context_length_exceeded", stream.Err())
		}
	})

	t.Run("completions", func(t *testing.T) {
		resp, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon")},
			MaxTokens: openai.Int(5), Stop: openai.CompletionNewParamsStopUnion{OfString: openai.String("\x00")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Usage.CompletionTokens == 0 {
			t.Errorf("completion %s", resp.RawJSON())
		}
	})
}

// npmPrefix is where server/testdata/npm-install.sh installs the openai
// package (DSV32_NPM_PREFIX, default ~/.cache/dsv32/npm).
func npmPrefix() string {
	if p := os.Getenv("DSV32_NPM_PREFIX"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "dsv32", "npm")
}

func TestNodeSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (CI installs it; see server/testdata/npm-install.sh)")
	}
	prefix := npmPrefix()
	if _, err := os.Stat(filepath.Join(prefix, "node_modules", "openai", "package.json")); err != nil {
		t.Skipf("the openai npm package is not in %s: run server/testdata/npm-install.sh", prefix)
	}
	url := dsv32Serve(t)
	// ESM resolves packages from the script's own directory upwards, so the
	// script runs from next to node_modules.
	script, err := os.ReadFile(filepath.Join("testdata", "client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(prefix, fmt.Sprintf("dsv32-client-%d.mjs", os.Getpid()))
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, path, url+"/v1", testModel)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, out)
	}
	var res struct {
		Plain struct {
			Content, Reasoning, Finish string
			Usage                      openai.CompletionUsage
		}
		Streamed struct {
			Content, Reasoning, Finish string
			Chunks                     int
			Usage                      *openai.CompletionUsage
		}
		NotFound struct {
			Status int
			Code   string
		}
		Overflow struct {
			Status int
			Code   string
		}
		Models []string
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client.mjs printed %q: %v", out, err)
	}
	t.Logf("node: %s", out)
	if res.Plain.Usage.CompletionTokens == 0 || res.Plain.Usage.TotalTokens != res.Plain.Usage.PromptTokens+res.Plain.Usage.CompletionTokens {
		t.Errorf("plain usage %+v", res.Plain.Usage)
	}
	if res.Streamed.Content != res.Plain.Content || res.Streamed.Reasoning != res.Plain.Reasoning || res.Streamed.Finish != res.Plain.Finish {
		t.Errorf("streamed %+v differs from plain %+v (same seed)", res.Streamed, res.Plain)
	}
	if res.Streamed.Usage == nil || res.Streamed.Usage.CompletionTokens != res.Plain.Usage.CompletionTokens || res.Streamed.Chunks < 3 {
		t.Errorf("streamed usage %+v, %d chunks", res.Streamed.Usage, res.Streamed.Chunks)
	}
	if res.NotFound.Status != 404 || res.NotFound.Code != "model_not_found" {
		t.Errorf("unknown model: %+v", res.NotFound)
	}
	if res.Overflow.Status != 400 || res.Overflow.Code != "context_length_exceeded" {
		t.Errorf("overflow: %+v", res.Overflow)
	}
	if len(res.Models) != 1 || res.Models[0] != testModel {
		t.Errorf("models %v", res.Models)
	}
}

// TestCLI runs `dsv32 run` and `dsv32 chat` (with piped input) on the tiny model.
func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the dsv32 binary")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := tinyDir()
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "GOMLX_NO_AUTO_INSTALL=1", "GOMLX_BACKEND=")
		cmd.Stdin = strings.NewReader(stdin)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dsv32 %v: %v\nstderr:\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	out := run("", "run", "--model", dir, "--thinking", "--max-tokens", "6", "--seed", "3", "Hello")
	if !strings.HasPrefix(out, "thinking: ") {
		t.Errorf("run --thinking output does not start with \"thinking: \": %q", out)
	}
	msgs := filepath.Join(t.TempDir(), "messages.json")
	os.WriteFile(msgs, []byte(`{"messages": [{"role": "system", "content": "Be brief."}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}`), 0o644)
	if out := run("", "run", "--model", dir, "--messages", msgs, "--max-tokens", "4", "Hi"); out == "" {
		t.Errorf("run --messages printed nothing")
	}
	out = run("hello\n/reset\n\nhi again\n/help\n/exit\nnot read\n", "chat", "--model", dir, "--max-tokens", "4")
	if !strings.Contains(out, "(conversation reset)") || !strings.Contains(out, "commands:") {
		t.Errorf("chat output: %q", out)
	}
	// Without --model, the model embedded in the binary answers.
	cmd := exec.Command(bin, "run", "--max-tokens", "8", "Hello")
	cmd.Env = append(os.Environ(), "GOMLX_NO_AUTO_INSTALL=1", "GOMLX_BACKEND=", "DSV32_MODEL=")
	if out, err := cmd.Output(); err != nil || len(strings.TrimSpace(string(out))) == 0 {
		t.Errorf("run with the embedded default model: %v, output %q", err, out)
	}
	if _, err := exec.Command(bin, "run", "--model", filepath.Join(t.TempDir(), "missing"), "Hello").CombinedOutput(); err == nil {
		t.Errorf("run with a missing --model succeeded")
	}
}
