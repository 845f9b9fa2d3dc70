package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/checkpoint"
	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/compute/gobackend"
)

// tinyVocab is the trained tokenizer's and the model's vocabulary size.
const tinyVocab = 512

// trainingText is what the tiny tokenizer learns its merges from: the chat
// format with a tool (so prompts stay short) and some English.
func trainingText() []string {
	weather := chat.Tool{Type: "function", Function: chat.Function{Name: "get_weather", Description: "Get the weather for a city.",
		Parameters: json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`)}}
	msgs, _ := chat.AttachTools([]chat.Message{
		{Role: chat.RoleUser, Content: "What is the weather in Paris?"},
		{Role: chat.RoleAssistant, ReasoningContent: "I should call the tool.", ToolCalls: []chat.ToolCall{{Type: "function",
			Function: chat.FunctionCall{Name: "get_weather", Arguments: `{"city": "Paris"}`}}}},
		{Role: chat.RoleTool, Content: "sunny, 21 degrees"},
		{Role: chat.RoleAssistant, ReasoningContent: "It is sunny.", Content: "It is sunny and 21 degrees in Paris."},
	}, []chat.Tool{weather}, nil)
	var texts []string
	for _, thinking := range []bool{false, true} {
		p, err := chat.Encode(msgs, chat.Options{Thinking: thinking, DropThinking: true, AddBOS: true})
		if err != nil {
			panic(err)
		}
		texts = append(texts, p)
	}
	english := strings.Repeat("The quick brown fox jumps over the lazy dog. Hello, world! Say hi to the user. "+
		"Count to ten: one two three four five six seven eight nine ten. ", 8)
	return append(texts, english)
}

var (
	tinyOnce sync.Once
	tinyPath string
	tinyErr  error
	tinyRoot string // removed by TestMain
)

// tinyDir returns a model directory made once per test binary: a byte-level
// BPE trained on trainingText, and a random model shaped like
// testdata/tiny-dsa with the tokenizer's vocabulary.
func tinyDir() (string, error) {
	tinyOnce.Do(func() {
		tinyPath, tinyErr = makeTinyDir()
	})
	return tinyPath, tinyErr
}

func makeTinyDir() (string, error) {
	root, err := os.MkdirTemp("", "dsv32-server-test-")
	if err != nil {
		return "", err
	}
	tinyRoot = root
	dir := filepath.Join(root, "tiny")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bpe, err := tokenizer.Train(slices.Values(trainingText()), tinyVocab, tokenizer.TrainOptions{})
	if err != nil {
		return "", fmt.Errorf("train tokenizer: %w", err)
	}
	if err := bpe.Save(filepath.Join(dir, "tokenizer.json")); err != nil {
		return "", err
	}
	data, err := os.ReadFile(testutil.Testdata("tiny-dsa", "config.json"))
	if err != nil {
		return "", err
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return "", err
	}
	raw["vocab_size"] = tinyVocab
	data, _ = json.Marshal(raw)
	cfg, err := model.ParseConfig(data)
	if err != nil {
		return "", err
	}
	m, err := model.NewRandom(cfg, 0.08, 7, dtypes.Float32)
	if err != nil {
		return "", err
	}
	if err := m.Save(dir, checkpoint.F32); err != nil {
		return "", err
	}
	return dir, nil
}

var (
	runtimeOnce sync.Once
	sharedEng   *engine.Engine
	sharedTok   *tokenizer.BPE
	runtimeErr  error
)

// tinyRuntime is the tiny model's engine and tokenizer, shared by the tests
// (the engine batches their requests together, as a server does).
func tinyRuntime() (*engine.Engine, *tokenizer.BPE, error) {
	runtimeOnce.Do(func() {
		dir, err := tinyDir()
		if err != nil {
			runtimeErr = err
			return
		}
		m, err := model.Load(dir, dtypes.Float32)
		if err != nil {
			runtimeErr = err
			return
		}
		sharedTok, err = tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			runtimeErr = err
			return
		}
		os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
		backend, err := compute.NewWithConfig("go:ops_sequential") // as testutil.Backend
		if err != nil {
			runtimeErr = err
			return
		}
		sharedEng, runtimeErr = engine.New(m, backend, engine.Config{MaxBatch: 8})
	})
	return sharedEng, sharedTok, runtimeErr
}
