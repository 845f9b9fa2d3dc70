package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/engine"
)

// chatJob is a validated chat request, ready for the engine.
type chatJob struct {
	thinking     bool
	prompt       []int32
	params       engine.SampleParams
	n            int
	stops        []string
	logprobs     bool
	includeUsage bool
}

var toolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// prepareChat validates a request and renders its prompt.
func (s *Server) prepareChat(req *ChatRequest) (*chatJob, *Error) {
	if err := s.checkModel(req.Model); err != nil {
		return nil, err
	}
	if len(req.Messages) == 0 {
		return nil, errorf(http.StatusBadRequest, "invalid_value", "messages", "messages must not be empty")
	}
	job := &chatJob{thinking: s.cfg.Thinking, logprobs: req.Logprobs,
		includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage}
	if raw, ok := req.ChatTemplateKwargs["thinking"]; ok {
		if err := json.Unmarshal(raw, &job.thinking); err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid_type", "chat_template_kwargs.thinking", "invalid type for 'chat_template_kwargs.thinking': expected a boolean")
		}
	} else if raw, ok := req.ChatTemplateKwargs["enable_thinking"]; ok {
		if err := json.Unmarshal(raw, &job.thinking); err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid_type", "chat_template_kwargs.enable_thinking", "invalid type for 'chat_template_kwargs.enable_thinking': expected a boolean")
		}
	}
	if req.Thinking != nil {
		job.thinking = req.Thinking.Enabled
	}
	maxTokens := req.MaxCompletionTokens
	if maxTokens == nil {
		maxTokens = req.MaxTokens
	}
	topLogprobs := 0
	if req.TopLogprobs != nil {
		if !req.Logprobs && *req.TopLogprobs > 0 {
			return nil, errorf(http.StatusBadRequest, "invalid_value", "top_logprobs", "top_logprobs needs logprobs: true")
		}
		topLogprobs = *req.TopLogprobs
	}
	params, n, err := s.params(sampling{n: req.N, temperature: req.Temperature, topP: req.TopP, topK: req.TopK,
		minP: req.MinP, presence: req.PresencePenalty, frequency: req.FrequencyPenalty, seed: req.Seed,
		stop: req.Stop, maxTokens: maxTokens, topLogprobs: topLogprobs, logitBias: req.LogitBias})
	if err != nil {
		if req.MaxCompletionTokens != nil && err.Param != nil && *err.Param == "max_tokens" {
			*err.Param = "max_completion_tokens"
		}
		return nil, err
	}
	job.params, job.n, job.stops = params, n, req.Stop

	messages, err := s.checkMessages(req.Messages)
	if err != nil {
		return nil, err
	}
	tools, err := checkTools(req.Tools, req.ToolChoice)
	if err != nil {
		return nil, err
	}
	format, err := responseFormat(req.ResponseFormat)
	if err != nil {
		return nil, err
	}
	messages, e := chat.AttachTools(messages, tools, format)
	if e != nil {
		return nil, errorf(http.StatusBadRequest, "invalid_value", "tools", "%v", e)
	}
	prompt, e := s.encode(messages, job.thinking)
	if e != nil {
		return nil, errorf(http.StatusBadRequest, "invalid_value", "messages", "%v", e)
	}
	for _, id := range s.tok.Encode(prompt) {
		job.prompt = append(job.prompt, int32(id))
	}
	if err := s.checkContext(len(job.prompt), params.MaxTokens); err != nil {
		return nil, err
	}
	return job, nil
}

// checkMessages checks roles, and puts each block of tool results in the
// order of the calls they answer (the format pairs them by position).
func (s *Server) checkMessages(in []chat.Message) ([]chat.Message, *Error) {
	msgs := slices.Clone(in)
	for i, m := range msgs {
		param := fmt.Sprintf("messages[%d].role", i)
		switch m.Role {
		case chat.RoleSystem, chat.RoleUser, chat.RoleAssistant, chat.RoleTool:
		case chat.RoleDeveloper:
			return nil, errorf(http.StatusBadRequest, "invalid_value", param,
				"role 'developer' is not supported: DeepSeek-V3.2 uses it only for its search agent; use 'system'")
		case "":
			return nil, errorf(http.StatusBadRequest, "missing_required_parameter", param, "messages[%d] has no role", i)
		default:
			return nil, errorf(http.StatusBadRequest, "invalid_value", param,
				"role '%s' is not one of 'system', 'user', 'assistant' and 'tool'", m.Role)
		}
		if m.Role == chat.RoleTool && (i == 0 || (msgs[i-1].Role != chat.RoleTool && msgs[i-1].Role != chat.RoleAssistant)) {
			return nil, errorf(http.StatusBadRequest, "invalid_value", fmt.Sprintf("messages[%d]", i),
				"messages[%d]: a tool message must follow an assistant message with tool_calls", i)
		}
		for k, call := range m.ToolCalls {
			if call.Function.Name == "" {
				return nil, errorf(http.StatusBadRequest, "invalid_value", fmt.Sprintf("messages[%d].tool_calls[%d].function.name", i, k),
					"messages[%d].tool_calls[%d] has no function name", i, k)
			}
		}
	}
	for i := 0; i < len(msgs); i++ {
		calls := msgs[i].ToolCalls
		if msgs[i].Role != chat.RoleAssistant || len(calls) == 0 {
			continue
		}
		j := i + 1
		for j < len(msgs) && msgs[j].Role == chat.RoleTool {
			j++
		}
		results := msgs[i+1 : j]
		if j == len(msgs) && len(results) == 0 {
			continue // the calls are the last message: no results yet
		}
		if len(results) != len(calls) {
			return nil, errorf(http.StatusBadRequest, "invalid_value", fmt.Sprintf("messages[%d]", i),
				"messages[%d] has %d tool calls, but %d tool messages follow it; send one result per call", i, len(calls), len(results))
		}
		pos := map[string]int{}
		for k, c := range calls {
			if c.ID != "" {
				pos[c.ID] = k
			}
		}
		byID := len(pos) == len(calls)
		seen := map[string]bool{}
		for _, r := range results {
			_, ok := pos[r.ToolCallID]
			byID = byID && ok && !seen[r.ToolCallID]
			seen[r.ToolCallID] = true
		}
		if byID {
			slices.SortStableFunc(results, func(a, b chat.Message) int { return pos[a.ToolCallID] - pos[b.ToolCallID] })
		}
		i = j - 1
	}
	return msgs, nil
}

// checkTools validates the tools and applies tool_choice: "auto" (the
// default) lists every tool in the prompt and lets the model decide; "none"
// leaves the tools out of the prompt; "required" lists them all and a named
// function lists only that one. The server cannot force a call (it does not
// constrain decoding), so with "required" or a named function the model may
// still answer in text.
func checkTools(tools []chat.Tool, choice *ToolChoice) ([]chat.Tool, *Error) {
	names := map[string]bool{}
	for i, t := range tools {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return nil, errorf(http.StatusBadRequest, "invalid_tools", p+".type", "%s.type is %q; only \"function\" tools are supported", p, t.Type)
		}
		name := t.Function.Name
		if !toolNameRE.MatchString(name) {
			return nil, errorf(http.StatusBadRequest, "invalid_tools", p+".function.name",
				"%s.function.name %q: must be 1 to 64 letters, digits, '_' or '-'", p, name)
		}
		if names[name] {
			return nil, errorf(http.StatusBadRequest, "invalid_tools", p+".function.name", "%s: duplicate function name %q", p, name)
		}
		names[name] = true
		if raw := t.Function.Parameters; len(raw) > 0 && string(raw) != "null" {
			var schema map[string]json.RawMessage
			if err := json.Unmarshal(raw, &schema); err != nil {
				return nil, errorf(http.StatusBadRequest, "invalid_tools", p+".function.parameters",
					"%s.function.parameters must be a JSON Schema object: %v", p, err)
			}
			if typ, ok := schema["type"]; ok && string(typ) != `"object"` {
				return nil, errorf(http.StatusBadRequest, "invalid_tools", p+".function.parameters",
					`%s.function.parameters: the schema's type must be "object", got %s`, p, typ)
			}
		}
	}
	if choice == nil {
		return tools, nil
	}
	switch choice.Mode {
	case "none":
		return nil, nil
	case "required":
		if len(tools) == 0 {
			return nil, errorf(http.StatusBadRequest, "invalid_value", "tool_choice", "tool_choice 'required' needs tools")
		}
	case "function":
		for _, t := range tools {
			if t.Function.Name == choice.Name {
				return []chat.Tool{t}, nil
			}
		}
		return nil, errorf(http.StatusBadRequest, "invalid_value", "tool_choice", "tool_choice names function %q, which is not in tools", choice.Name)
	}
	return tools, nil
}

// responseFormat returns what the prompt's response-format section shows:
// nothing for {"type": "text"}, the object for json_object and json_schema.
func responseFormat(raw json.RawMessage) (json.RawMessage, *Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var rf struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return nil, errorf(http.StatusBadRequest, "invalid_type", "response_format", "response_format must be an object with a type")
	}
	switch rf.Type {
	case "text":
		return nil, nil
	case "json_object", "json_schema":
		return raw, nil
	}
	return nil, errorf(http.StatusBadRequest, "invalid_value", "response_format.type",
		"response_format.type %q: want \"text\", \"json_object\" or \"json_schema\"", rf.Type)
}

// encode renders the prompt. In thinking mode, an assistant message after
// the last user message with neither reasoning nor tool calls is one the
// format has no rendering for; it is rendered with empty reasoning
// ("</think>content<EOS>") and logged, rather than refused.
func (s *Server) encode(msgs []chat.Message, thinking bool) (string, error) {
	opts := chat.Options{Thinking: thinking, DropThinking: true, AddBOS: true}
	if !thinking {
		return chat.Encode(msgs, opts)
	}
	last := -1
	for i, m := range msgs {
		if m.Role == chat.RoleUser {
			last = i
		}
	}
	var b strings.Builder
	start := 0
	for i := last + 1; i < len(msgs); i++ {
		m := msgs[i]
		if m.Role != chat.RoleAssistant {
			continue
		}
		if m.ReasoningContent == "" {
			s.log.Warn("thinking mode: assistant message without reasoning_content; the prompt differs from training", "message", i)
		}
		if m.ReasoningContent != "" || len(m.ToolCalls) > 0 {
			continue
		}
		opts.Context = msgs[:start]
		part, err := chat.Encode(msgs[start:i], opts)
		if err != nil {
			return "", err
		}
		b.WriteString(part + chat.ThinkEnd + m.Content + chat.EOS)
		start = i + 1
	}
	opts.Context = msgs[:start]
	part, err := chat.Encode(msgs[start:], opts)
	if err != nil {
		return "", err
	}
	b.WriteString(part)
	return b.String(), nil
}

// chatChoice follows one generated message.
type chatChoice struct {
	index           int
	text            *textStream
	parser          *outputParser
	msg             ResponseMessage
	tokens          int
	reasoningTokens int
	inReasoning     bool
	logprobs        []TokenLogprob
	pending         []TokenLogprob // logprobs not yet sent in a chunk
	started         bool           // the role chunk was sent
	finish          string
	cached          int // prompt tokens taken from the cache
}

// token takes one generated token and returns the deltas it releases.
func (s *Server) chatToken(c *chatChoice, t engine.Token, job *chatJob) []chat.Delta {
	if c.text.stopped {
		return nil
	}
	c.tokens++
	if c.inReasoning {
		c.reasoningTokens++
	}
	if job.logprobs {
		lp := s.chatLogprob(t)
		c.logprobs = append(c.logprobs, lp)
		c.pending = append(c.pending, lp)
	}
	var ds []chat.Delta
	if t.ID == s.eos {
		ds = c.parser.push(c.text.flush())
		ds = append(ds, c.parser.eos()...)
	} else {
		ds = c.parser.push(c.text.add(t.ID))
	}
	return c.apply(ds)
}

// apply adds deltas to the message, giving tool calls their ids.
func (c *chatChoice) apply(ds []chat.Delta) []chat.Delta {
	for i := range ds {
		d := &ds[i]
		switch d.Kind {
		case chat.ReasoningDelta:
			c.msg.ReasoningContent += d.Text
			continue
		case chat.ContentDelta:
			c.msg.Content += d.Text
		case chat.ToolCallDelta:
			d.ToolCall.ID, d.ToolCall.Type = newID("call_"), "function"
			c.msg.ToolCalls = append(c.msg.ToolCalls, d.ToolCall)
		}
		c.inReasoning = false
	}
	return ds
}

func (s *Server) chatLogprob(t engine.Token) TokenLogprob {
	text, bs := s.tokenText(t.ID)
	lp := TokenLogprob{Token: text, Logprob: float64(t.Logprob), Bytes: bs, TopLogprobs: []TopLogprob{}}
	for _, alt := range t.Top {
		at, ab := s.tokenText(alt.ID)
		lp.TopLogprobs = append(lp.TopLogprobs, TopLogprob{Token: at, Logprob: float64(alt.Logprob), Bytes: ab})
	}
	return lp
}

// deltasToChunks groups deltas into chunk deltas: a run of reasoning, a run
// of content, a run of tool calls.
func deltasToChunks(ds []chat.Delta) []ChunkDelta {
	var out []ChunkDelta
	last := chat.DeltaKind(0)
	for _, d := range ds {
		if d.Kind != last {
			out = append(out, ChunkDelta{})
			last = d.Kind
		}
		cd := &out[len(out)-1]
		switch d.Kind {
		case chat.ReasoningDelta:
			if cd.ReasoningContent == nil {
				cd.ReasoningContent = new(string)
			}
			*cd.ReasoningContent += d.Text
		case chat.ContentDelta:
			if cd.Content == nil {
				cd.Content = new(string)
			}
			*cd.Content += d.Text
		case chat.ToolCallDelta:
			cd.ToolCalls = append(cd.ToolCalls, ChunkToolCall{Index: d.Index, ID: d.ToolCall.ID, Type: "function", Function: d.ToolCall.Function})
		}
	}
	return out
}

// Chat runs a chat completion. With emit set it streams: emit gets every
// chunk in order (the role, the deltas, each choice's finish, then usage
// when the request asks for it), and an error from emit cancels the
// generation. The response is returned either way. Cancelling ctx cancels
// the generation.
func (s *Server) Chat(ctx context.Context, req *ChatRequest, emit func(*ChatChunk) error) (*ChatResponse, *Error) {
	job, err := s.prepareChat(req)
	if err != nil {
		return nil, err
	}
	resp := &ChatResponse{ID: newID("chatcmpl-"), Object: "chat.completion", Created: time.Now().Unix(), Model: s.cfg.ModelName}
	choices := make([]*chatChoice, job.n)
	reqs := make([]engine.Request, job.n)
	for i := range job.n {
		p := job.params
		if p.HasSeed {
			p.Seed += uint64(i)
		}
		reqs[i] = engine.Request{Prompt: job.prompt, Params: p}
		choices[i] = &chatChoice{index: i, text: newTextStream(s.tok, job.stops), inReasoning: job.thinking,
			parser: newOutputParser(job.thinking, func(err error) {
				s.log.Debug("model output does not parse; passing it on as text", "choice", i, "err", err)
			})}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failure *Error
	var emitErr error
	send := func(c *chatChoice, delta ChunkDelta, finish *string) {
		if emit == nil || emitErr != nil {
			return
		}
		if !c.started {
			c.started = true
			empty := ""
			if emitErr = emit(s.chatChunk(resp, ChunkChoice{Index: c.index, Delta: ChunkDelta{Role: "assistant", Content: &empty}})); emitErr != nil {
				cancel()
				return
			}
		}
		cc := ChunkChoice{Index: c.index, Delta: delta, FinishReason: finish}
		if len(c.pending) > 0 {
			cc.Logprobs = &ChatLogprobs{Content: c.pending}
			c.pending = nil
		}
		if emitErr = emit(s.chatChunk(resp, cc)); emitErr != nil {
			cancel()
		}
	}
	s.run(ctx, reqs, func(ev event) bool {
		c := choices[ev.choice]
		if !ev.final {
			for _, d := range deltasToChunks(s.chatToken(c, ev.tok, job)) {
				send(c, d, nil)
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
		ds := c.parser.push(c.text.flush())
		ds = c.apply(append(ds, c.parser.finish()...))
		for _, d := range deltasToChunks(ds) {
			send(c, d, nil)
		}
		c.finish = "stop"
		switch {
		case ev.res.Finish == engine.FinishLength && !c.text.stopped:
			c.finish = "length"
		case len(c.msg.ToolCalls) > 0:
			c.finish = "tool_calls"
		}
		s.metrics.generation(ev.res, c.finish)
		c.cached = ev.res.CachedTokens
		finish := c.finish
		send(c, ChunkDelta{}, &finish)
		return false
	})
	if failure != nil {
		return nil, failure
	}
	if err := ctx.Err(); err != nil && emitErr == nil {
		return nil, errorf(499, "client_closed_request", "", "the request was cancelled: %v", context.Cause(ctx))
	}
	usage := &Usage{PromptTokens: len(job.prompt), PromptTokensDetails: &PromptTokensDetails{CachedTokens: len(job.prompt)}}
	for _, c := range choices {
		usage.PromptTokensDetails.CachedTokens = min(usage.PromptTokensDetails.CachedTokens, c.cached)
		c.msg.Role = "assistant"
		choice := ChatChoice{Index: c.index, Message: c.msg, FinishReason: c.finish}
		if job.logprobs {
			choice.Logprobs = &ChatLogprobs{Content: c.logprobs}
			if choice.Logprobs.Content == nil {
				choice.Logprobs.Content = []TokenLogprob{}
			}
		}
		resp.Choices = append(resp.Choices, choice)
		usage.CompletionTokens += c.tokens
		if job.thinking {
			if usage.CompletionTokensDetails == nil {
				usage.CompletionTokensDetails = &CompletionTokensDetails{}
			}
			usage.CompletionTokensDetails.ReasoningTokens += c.reasoningTokens
		}
	}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	resp.Usage = usage
	if emit != nil && emitErr == nil && job.includeUsage {
		chunk := s.chatChunk(resp, ChunkChoice{})
		chunk.Choices, chunk.Usage = []ChunkChoice{}, usage
		emitErr = emit(chunk)
	}
	return resp, nil
}

func (s *Server) chatChunk(resp *ChatResponse, c ChunkChoice) *ChatChunk {
	return &ChatChunk{ID: resp.ID, Object: "chat.completion.chunk", Created: resp.Created, Model: resp.Model, Choices: []ChunkChoice{c}}
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	answer(w, r, s.cfg.MaxBodyBytes, DecodeChatRequest, func(q *ChatRequest) bool { return q.Stream }, s.Chat)
}

// answer decodes a request and runs it, replying with one JSON object, or
// with an SSE stream of chunks when the request asks for a stream.
func answer[Q, R, C any](w http.ResponseWriter, r *http.Request, maxBody int64, decode func([]byte) (Q, *Error),
	stream func(Q) bool, run func(context.Context, Q, func(C) error) (R, *Error)) {
	data, err := readBody(w, r, maxBody)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := decode(data)
	if err != nil {
		writeError(w, err)
		return
	}
	if !stream(req) {
		resp, err := run(r.Context(), req, nil)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	sse := newSSE(w)
	_, err = run(r.Context(), req, func(c C) error { return sse.send(c) })
	sse.finish(err)
}
