package server

import (
	"context"
	"net/http"
	"time"

	"github.com/dsv32/dsv32/engine"
)

// compChoice follows one text completion.
type compChoice struct {
	index    int
	text     *textStream
	out      []byte
	tokens   int
	logprobs *CompletionLogprobs
	finish   string
	cached   int // prompt tokens taken from the cache
}

// Complete runs a text completion: the prompt as given, no chat format. With
// emit set it streams chunks. The EOS token ends a completion and is not part
// of its text.
func (s *Server) Complete(ctx context.Context, req *CompletionRequest, emit func(*CompletionResponse) error) (*CompletionResponse, *Error) {
	if err := s.checkModel(req.Model); err != nil {
		return nil, err
	}
	switch {
	case req.Suffix != "":
		return nil, errorf(http.StatusBadRequest, "invalid_value", "suffix", "suffix is not supported")
	case req.Echo:
		return nil, errorf(http.StatusBadRequest, "invalid_value", "echo", "echo is not supported")
	case req.BestOf != nil && *req.BestOf != 1 && (req.N == nil || *req.BestOf != *req.N):
		return nil, errorf(http.StatusBadRequest, "invalid_value", "best_of", "best_of is not supported (it may only equal n)")
	}
	maxTokens := req.MaxTokens
	if maxTokens == nil {
		sixteen := 16
		maxTokens = &sixteen
	}
	topLogprobs := 0
	if req.Logprobs != nil {
		topLogprobs = *req.Logprobs
	}
	params, n, err := s.params(sampling{n: req.N, temperature: req.Temperature, topP: req.TopP, topK: req.TopK,
		minP: req.MinP, presence: req.PresencePenalty, frequency: req.FrequencyPenalty, seed: req.Seed,
		stop: req.Stop, maxTokens: maxTokens, topLogprobs: topLogprobs, logitBias: req.LogitBias})
	if err != nil {
		if err.Param != nil && *err.Param == "top_logprobs" {
			*err.Param = "logprobs"
		}
		return nil, err
	}
	// The prompts as token ids.
	var prompts [][]int32
	switch {
	case req.Prompt.IDs != nil:
		V := s.eng.Model().Config.VocabSize
		for i, ids := range req.Prompt.IDs {
			for k, id := range ids {
				if id < 0 || int(id) >= V {
					return nil, errorf(http.StatusBadRequest, "invalid_value", "prompt",
						"prompt %d: token %d at position %d is outside the vocabulary [0, %d)", i, id, k, V)
				}
			}
		}
		prompts = req.Prompt.IDs
	case req.Prompt.Texts != nil:
		for _, text := range req.Prompt.Texts {
			var ids []int32
			for _, id := range s.tok.Encode(text) {
				ids = append(ids, int32(id))
			}
			prompts = append(prompts, ids)
		}
	default:
		return nil, errorf(http.StatusBadRequest, "missing_required_parameter", "prompt", "you must provide a prompt")
	}
	promptTokens := 0
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, errorf(http.StatusBadRequest, "invalid_value", "prompt", "prompt %d is empty", i)
		}
		if err := s.checkContext(len(p), params.MaxTokens); err != nil {
			err.Param = new(string)
			*err.Param = "prompt"
			return nil, err
		}
		promptTokens += len(p)
	}
	if len(prompts)*n > s.cfg.MaxN {
		return nil, errorf(http.StatusBadRequest, "invalid_value", "n", "%d prompts × n %d: at most %d completions per request", len(prompts), n, s.cfg.MaxN)
	}

	resp := &CompletionResponse{ID: newID("cmpl-"), Object: "text_completion", Created: time.Now().Unix(), Model: s.cfg.ModelName}
	var reqs []engine.Request
	var choices []*compChoice
	for _, p := range prompts {
		for i := range n {
			pp := params
			if pp.HasSeed {
				pp.Seed += uint64(i)
			}
			reqs = append(reqs, engine.Request{Prompt: p, Params: pp})
			c := &compChoice{index: len(choices), text: newTextStream(s.tok, req.Stop)}
			if req.Logprobs != nil {
				c.logprobs = &CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
			}
			choices = append(choices, c)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failure *Error
	var emitErr error
	send := func(c *compChoice, text string, lp *CompletionLogprobs, finish *string) {
		if emit == nil || emitErr != nil {
			return
		}
		chunk := &CompletionResponse{ID: resp.ID, Object: "text_completion", Created: resp.Created, Model: resp.Model,
			Choices: []CompletionChoice{{Index: c.index, Text: text, Logprobs: lp, FinishReason: finish}}}
		if emitErr = emit(chunk); emitErr != nil {
			cancel()
		}
	}
	s.run(ctx, reqs, func(ev event) bool {
		c := choices[ev.choice]
		if !ev.final {
			if c.text.stopped {
				return true
			}
			c.tokens++
			var text string
			if ev.tok.ID == s.eos {
				text = c.text.flush()
			} else {
				text = c.text.add(ev.tok.ID)
			}
			var lp *CompletionLogprobs
			if c.logprobs != nil {
				lp = s.completionLogprob(ev.tok, len(c.out))
				c.logprobs.Tokens = append(c.logprobs.Tokens, lp.Tokens...)
				c.logprobs.TokenLogprobs = append(c.logprobs.TokenLogprobs, lp.TokenLogprobs...)
				c.logprobs.TopLogprobs = append(c.logprobs.TopLogprobs, lp.TopLogprobs...)
				c.logprobs.TextOffset = append(c.logprobs.TextOffset, lp.TextOffset...)
			}
			c.out = append(c.out, text...)
			if text != "" || lp != nil {
				send(c, text, lp, nil)
			}
			return c.text.stopped
		}
		if ev.err != nil {
			if failure == nil {
				failure = engineError(ev.err)
				cancel()
			}
			return false
		}
		rest := c.text.flush()
		c.out = append(c.out, rest...)
		c.finish = "stop"
		if ev.res.Finish == engine.FinishLength && !c.text.stopped {
			c.finish = "length"
		}
		s.metrics.generation(ev.res, c.finish)
		c.cached = ev.res.CachedTokens
		finish := c.finish
		send(c, rest, nil, &finish)
		return false
	})
	if failure != nil {
		return nil, failure
	}
	if err := ctx.Err(); err != nil && emitErr == nil {
		return nil, errorf(499, "client_closed_request", "", "the request was cancelled: %v", err)
	}
	usage := &Usage{PromptTokens: promptTokens, PromptTokensDetails: &PromptTokensDetails{CachedTokens: promptTokens}}
	for _, c := range choices {
		usage.PromptTokensDetails.CachedTokens = min(usage.PromptTokensDetails.CachedTokens, c.cached)
		finish := c.finish
		resp.Choices = append(resp.Choices, CompletionChoice{Index: c.index, Text: string(c.out), Logprobs: c.logprobs, FinishReason: &finish})
		usage.CompletionTokens += c.tokens
	}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	resp.Usage = usage
	if emit != nil && emitErr == nil && req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		emitErr = emit(&CompletionResponse{ID: resp.ID, Object: "text_completion", Created: resp.Created, Model: resp.Model,
			Choices: []CompletionChoice{}, Usage: usage})
	}
	return resp, nil
}

func (s *Server) completionLogprob(t engine.Token, offset int) *CompletionLogprobs {
	text, _ := s.tokenText(t.ID)
	top := map[string]float64{}
	for _, alt := range t.Top {
		at, _ := s.tokenText(alt.ID)
		if _, ok := top[at]; !ok {
			top[at] = float64(alt.Logprob)
		}
	}
	return &CompletionLogprobs{Tokens: []string{text}, TokenLogprobs: []float64{float64(t.Logprob)},
		TopLogprobs: []map[string]float64{top}, TextOffset: []int{offset}}
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	answer(w, r, s.cfg.MaxBodyBytes, DecodeCompletionRequest, func(q *CompletionRequest) bool { return q.Stream }, s.Complete)
}
