package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/tokenizer"
)

// This file runs a request's generations and turns their tokens into text:
// the event queue between the engine and the handler, stop strings on
// detokenized text, and the tolerant reading of DeepSeek's output format.

// sampling are the request fields both endpoints share.
type sampling struct {
	n                       *int
	temperature, topP, minP *float64
	topK                    *int
	presence, frequency     *float64
	seed                    *int64
	stop                    []string
	maxTokens               *int
	topLogprobs             int
	logitBias               map[string]float64
}

const maxStops = 16

// params checks the shared fields and returns the engine's sampling
// parameters and n. Defaults: temperature 1, top_p 1 (off), n 1.
func (s *Server) params(f sampling) (engine.SampleParams, int, *Error) {
	bad := func(param, format string, args ...any) (engine.SampleParams, int, *Error) {
		return engine.SampleParams{}, 0, errorf(http.StatusBadRequest, "invalid_value", param, format, args...)
	}
	p := engine.SampleParams{Temperature: 1, TopP: 1}
	n := 1
	if f.n != nil {
		n = *f.n
		if n < 1 || n > s.cfg.MaxN {
			return bad("n", "n %d: must be in [1, %d]", n, s.cfg.MaxN)
		}
	}
	if v := f.temperature; v != nil {
		if !(*v >= 0 && *v <= 2) {
			return bad("temperature", "temperature %g: must be in [0, 2]", *v)
		}
		p.Temperature = *v
	}
	if v := f.topP; v != nil {
		if !(*v > 0 && *v <= 1) {
			return bad("top_p", "top_p %g: must be in (0, 1]", *v)
		}
		p.TopP = *v
	}
	if v := f.topK; v != nil {
		if *v < -1 {
			return bad("top_k", "top_k %d: must be -1 (off), 0 (off) or positive", *v)
		}
		p.TopK = max(*v, 0)
	}
	if v := f.minP; v != nil {
		if !(*v >= 0 && *v <= 1) {
			return bad("min_p", "min_p %g: must be in [0, 1]", *v)
		}
		p.MinP = *v
	}
	if v := f.presence; v != nil {
		if !(*v >= -2 && *v <= 2) {
			return bad("presence_penalty", "presence_penalty %g: must be in [-2, 2]", *v)
		}
		p.PresencePenalty = *v
	}
	if v := f.frequency; v != nil {
		if !(*v >= -2 && *v <= 2) {
			return bad("frequency_penalty", "frequency_penalty %g: must be in [-2, 2]", *v)
		}
		p.FrequencyPenalty = *v
	}
	if f.seed != nil {
		p.Seed, p.HasSeed = uint64(*f.seed), true
	}
	if v := f.maxTokens; v != nil {
		if *v < 1 {
			return bad("max_tokens", "max_tokens %d: must be at least 1", *v)
		}
		p.MaxTokens = *v
	}
	if len(f.stop) > maxStops {
		return bad("stop", "%d stop sequences: at most %d", len(f.stop), maxStops)
	}
	if f.topLogprobs < 0 || f.topLogprobs > 20 {
		return bad("top_logprobs", "top_logprobs %d: must be in [0, 20]", f.topLogprobs)
	}
	p.TopLogprobs = f.topLogprobs
	if len(f.logitBias) > 0 {
		return bad("logit_bias", "logit_bias is not supported")
	}
	p.StopTokens = []int32{s.eos}
	return p, n, nil
}

// checkContext answers a prompt that cannot fit with OpenAI's 400.
func (s *Server) checkContext(promptTokens, maxTokens int) *Error {
	limit := s.eng.Config().MaxContext
	if promptTokens >= limit || promptTokens+maxTokens > limit {
		return errorf(http.StatusBadRequest, "context_length_exceeded", "messages",
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the prompt, %d for the completion). Please reduce the length of the prompt or max_tokens.",
			limit, promptTokens+maxTokens, promptTokens, maxTokens)
	}
	return nil
}

// engineError maps a generation error to an HTTP answer.
func engineError(err error) *Error {
	switch {
	case errors.Is(err, engine.ErrContextOverflow):
		return errorf(http.StatusBadRequest, "context_length_exceeded", "messages", "%v", err)
	case errors.Is(err, engine.ErrTooLarge):
		return errorf(http.StatusBadRequest, "cache_budget_exceeded", "max_tokens", "%v (lower max_tokens)", err)
	case errors.Is(err, engine.ErrClosed):
		return errorf(http.StatusServiceUnavailable, "server_shutting_down", "", "%v", err)
	}
	return errorf(http.StatusInternalServerError, "generation_failed", "", "generation failed: %v", err)
}

// event is a token of one generation, or its end.
type event struct {
	choice int
	tok    engine.Token
	final  bool
	res    *engine.Result
	err    error
}

// eventQueue is unbounded so that the engine's goroutine, which calls
// onToken, never waits for a slow client.
type eventQueue struct {
	mu    sync.Mutex
	items []event
	ready chan struct{}
}

func (q *eventQueue) push(ev event) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []event {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// generate runs one engine generation per request concurrently and calls
// handle for every event in order, on the caller's goroutine. handle
// returning true cancels that generation (a stop string matched). It
// returns when all generations have ended; cancelling ctx ends them.
func (s *Server) generate(ctx context.Context, reqs []engine.Request, handle func(event) bool) {
	q := &eventQueue{ready: make(chan struct{}, 1)}
	cancels := make([]context.CancelFunc, len(reqs))
	for i, r := range reqs {
		cctx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		go func() {
			res, err := s.eng.Generate(cctx, r, func(t engine.Token) { q.push(event{choice: i, tok: t}) })
			q.push(event{choice: i, final: true, res: res, err: err})
		}()
	}
	for left := len(reqs); left > 0; {
		<-q.ready
		for _, ev := range q.take() {
			if ev.final {
				left--
			}
			if handle(ev) || ev.final {
				cancels[ev.choice]()
			}
		}
	}
}

// textStream turns one generation's tokens into text: it detokenizes,
// matches stop strings on the text, and holds back a tail that could be
// the start of a stop string until the next tokens decide it.
type textStream struct {
	dec     *tokenizer.StreamDecoder
	stops   []string
	held    string
	stopped bool // a stop string matched: the text ends before it
}

func newTextStream(tok *tokenizer.BPE, stops []string) *textStream {
	var nonEmpty []string
	for _, s := range stops {
		if s != "" {
			nonEmpty = append(nonEmpty, s)
		}
	}
	return &textStream{dec: tokenizer.NewStreamDecoder(tok), stops: nonEmpty}
}

// add decodes one token and returns the text that is now certain.
func (t *textStream) add(id int32) string {
	if t.stopped {
		return ""
	}
	return t.match(t.dec.Add(int(id)))
}

// flush returns everything held back.
func (t *textStream) flush() string {
	if t.stopped {
		return ""
	}
	out := t.match(t.dec.Flush())
	if !t.stopped {
		out += t.held
		t.held = ""
	}
	return out
}

func (t *textStream) match(piece string) string {
	s := t.held + piece
	at := -1
	for _, stop := range t.stops {
		if i := strings.Index(s, stop); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at >= 0 {
		t.stopped, t.held = true, ""
		return s[:at]
	}
	keep := 0
	for _, stop := range t.stops {
		for l := min(len(stop)-1, len(s)); l > keep; l-- {
			if strings.HasSuffix(s, stop[:l]) {
				keep = l
				break
			}
		}
	}
	t.held = s[len(s)-keep:]
	return s[:len(s)-keep]
}

// outputParser reads the model's output with chat.StreamParser, and
// tolerates what the strict parser rejects: a completion cut by max_tokens or
// a stop string (no EOS), a special token inside the content, a malformed
// tool block. From the first error on, the unparsed raw text goes on as
// reasoning (when the think block never closed) or content, with a trailing
// EOS removed; tool calls parsed before the error are kept.
type outputParser struct {
	p        *chat.StreamParser
	thinking bool
	raw      strings.Builder
	emitted  struct{ reasoning, content int } // bytes released as each
	calls    int
	failed   bool
	dest     chat.DeltaKind // where text goes after a failure
	onError  func(error)
}

func newOutputParser(thinking bool, onError func(error)) *outputParser {
	return &outputParser{p: chat.NewStreamParser(thinking), thinking: thinking, onError: onError}
}

func (o *outputParser) push(text string) []chat.Delta {
	if text == "" {
		return nil
	}
	o.raw.WriteString(text)
	if o.failed {
		return []chat.Delta{{Kind: o.dest, Text: text}}
	}
	ds, err := o.p.Push(text)
	if err != nil {
		return o.fail(err)
	}
	return o.record(ds)
}

func (o *outputParser) finish() []chat.Delta {
	if o.failed {
		return nil
	}
	ds, _, err := o.p.Finish()
	if err != nil {
		return o.fail(err)
	}
	return o.record(ds)
}

// eos pushes the end-of-sentence string that ended the generation; after a
// failure it is not text.
func (o *outputParser) eos() []chat.Delta {
	if o.failed {
		return nil
	}
	return o.push(chat.EOS)
}

func (o *outputParser) record(ds []chat.Delta) []chat.Delta {
	for _, d := range ds {
		switch d.Kind {
		case chat.ReasoningDelta:
			o.emitted.reasoning += len(d.Text)
		case chat.ContentDelta:
			o.emitted.content += len(d.Text)
		case chat.ToolCallDelta:
			o.calls++
		}
	}
	return ds
}

// fail switches to raw text and returns the text not yet released.
func (o *outputParser) fail(err error) []chat.Delta {
	o.failed = true
	if o.onError != nil {
		o.onError(err)
	}
	raw := o.raw.String()
	pos := 0
	o.dest = chat.ContentDelta
	if o.thinking {
		pos = o.emitted.reasoning
		if strings.HasPrefix(raw[min(pos, len(raw)):], chat.ThinkEnd) {
			pos += len(chat.ThinkEnd)
		} else {
			o.dest = chat.ReasoningDelta
		}
	}
	if o.dest == chat.ContentDelta {
		pos += o.emitted.content
	}
	pos = min(pos, len(raw))
	if o.calls > 0 { // skip the invokes already returned
		closeTag := "</" + chat.DSML + "invoke>"
		for range o.calls {
			i := strings.Index(raw[pos:], closeTag)
			if i < 0 {
				break
			}
			pos += i + len(closeTag)
		}
		pos = len(raw) - len(strings.TrimPrefix(raw[pos:], "\n</"+chat.DSML+"function_calls>"))
	}
	rest := strings.TrimSuffix(raw[pos:], chat.EOS)
	if rest == "" {
		return nil
	}
	return []chat.Delta{{Kind: o.dest, Text: rest}}
}
