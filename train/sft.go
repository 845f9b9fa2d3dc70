package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/train/data"
)

// SFT data: conversations in OpenAI message format, rendered with the
// DeepSeek-V3.2 chat encoding, tokenised, and masked so that the loss falls
// exactly on what the assistant says — its reasoning, content and tool
// calls, and the end-of-sentence token that closes each of its turns — as
// the final render shows it: reasoning of turns before the last user
// message is not in the text (chat.Encode drops it), so it is not trained.

// Conversation is one line of an SFT file: OpenAI chat messages, optional
// request-level tools (attached to the system message, as a server does),
// and optionally the mode to render in.
type Conversation struct {
	Messages []chat.Message `json:"messages"`
	Tools    []chat.Tool    `json:"tools,omitempty"`
	// Thinking selects thinking mode; unset: thinking when an assistant
	// message after the last user message has reasoning_content.
	Thinking *bool `json:"thinking,omitempty"`
}

// ReadConversations reads a JSONL file of conversations (blank lines skipped).
func ReadConversations(path string) ([]Conversation, error) {
	js, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var convs []Conversation
	sc := bufio.NewScanner(bytes.NewReader(js))
	sc.Buffer(nil, 1<<28)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var c Conversation
		if err := json.Unmarshal(line, &c); err != nil {
			return nil, fmt.Errorf("train: %s:%d: %w", path, n, err)
		}
		if len(c.Messages) == 0 {
			return nil, fmt.Errorf("train: %s:%d: no messages", path, n)
		}
		convs = append(convs, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	if len(convs) == 0 {
		return nil, fmt.Errorf("train: %s: no conversations", path)
	}
	return convs, nil
}

// thinking is the mode a conversation renders in.
func (c Conversation) thinking() bool {
	if c.Thinking != nil {
		return *c.Thinking
	}
	last := -1
	for i, m := range c.Messages {
		if m.Role == chat.RoleUser || m.Role == chat.RoleDeveloper {
			last = i
		}
	}
	for _, m := range c.Messages[last+1:] {
		if m.Role == chat.RoleAssistant && m.ReasoningContent != "" {
			return true
		}
	}
	return false
}

// Span is a byte range [Start, End) of a rendered conversation.
type Span struct{ Start, End int }

// Render returns the conversation's prompt text (BOS first) and the byte
// span of every assistant message in it. The spans are exact: message i's
// text is the full render minus the render of messages i… with messages
// …i−1 as context (chat.Options.Context keeps every index-dependent rule —
// the last user message, reasoning retention, result pairing — as in the
// full render), so message i starts at len(full) − len(that suffix).
func (c Conversation) Render() (string, []Span, error) {
	msgs, err := chat.AttachTools(c.Messages, c.Tools, nil)
	if err != nil {
		return "", nil, err
	}
	opts := chat.Options{Thinking: c.thinking(), DropThinking: true, AddBOS: true}
	full, err := chat.Encode(msgs, opts)
	if err != nil {
		return "", nil, err
	}
	start := make([]int, len(msgs)+1)
	start[len(msgs)] = len(full)
	for i := len(msgs) - 1; i >= 1; i-- {
		o := opts
		o.Context = msgs[:i]
		suffix, err := chat.Encode(msgs[i:], o)
		if err != nil {
			return "", nil, err
		}
		start[i] = len(full) - len(suffix)
		if !strings.HasSuffix(full, suffix) || start[i] > start[i+1] {
			return "", nil, fmt.Errorf("train: message %d does not render as a suffix of the conversation", i)
		}
	}
	var spans []Span
	for i, m := range msgs {
		if m.Role != chat.RoleAssistant {
			continue
		}
		s := Span{start[i], start[i+1]}
		if !strings.HasSuffix(full[s.Start:s.End], chat.EOS) {
			return "", nil, fmt.Errorf("train: assistant message %d does not end with %s", i, chat.EOS)
		}
		spans = append(spans, s)
	}
	return full, spans, nil
}

// Example is one tokenised conversation: Mask[i] is 1 when token i is the
// assistant's (a target to train on), 0 when it is prompt.
type Example struct {
	Tokens []int32
	Mask   []float32
}

// Tokenize renders a conversation and encodes it piece by piece: the prompt
// pieces and the assistant spans separately, so that every token is wholly
// inside one or the other, as at inference, where the prompt is encoded
// and the assistant's tokens follow it. Each span starts right after
// <think> or </think> and ends with EOS, added tokens that the tokenizer
// splits out first, so the pieces encode exactly as the whole text does.
func (c Conversation) Tokenize(enc data.Encoder) (Example, error) {
	text, spans, err := c.Render()
	if err != nil {
		return Example{}, err
	}
	var ex Example
	add := func(s string, w float32) {
		for _, id := range enc.Encode(s) {
			ex.Tokens = append(ex.Tokens, int32(id))
			ex.Mask = append(ex.Mask, w)
		}
	}
	at := 0
	for _, s := range spans {
		add(text[at:s.Start], 0)
		add(text[s.Start:s.End], 1)
		at = s.End
	}
	add(text[at:], 0)
	if len(spans) == 0 {
		return ex, errors.New("train: the conversation has no assistant message to train on")
	}
	return ex, nil
}

// TokenizeAll tokenises conversations, naming the first that fails.
func TokenizeAll(convs []Conversation, enc data.Encoder) ([]Example, error) {
	out := make([]Example, len(convs))
	for i, c := range convs {
		ex, err := c.Tokenize(enc)
		if err != nil {
			return nil, fmt.Errorf("train: conversation %d: %w", i+1, err)
		}
		out[i] = ex
	}
	return out, nil
}

// SFTPacker lays examples into rows of SeqLen+1 tokens, each example a
// segment of its own (attention stays inside it, positions from 0), whole
// examples greedily in order, padding the rest of a row when the next does
// not fit. An example longer than a row is truncated to the row (its tail
// is not trained). Row.Mask[t] is the assistant mask of target t+1 within
// the segment. The order is shuffled per epoch from the seed; State and
// Seek resume it exactly (Offset is always 0). It is a Source.
type SFTPacker struct {
	ex      []Example
	seqLen  int
	seed    uint64
	shuffle bool
	pad     int32
	st      data.State
	order   []int
	ordEp   int
}

// NewSFTPacker packs examples into rows of seqLen+1 tokens; pad is the id
// on padding positions.
func NewSFTPacker(ex []Example, seqLen int, shuffle bool, seed uint64, pad int32) (*SFTPacker, error) {
	if len(ex) == 0 {
		return nil, errors.New("train: no SFT examples")
	}
	if seqLen < 1 {
		return nil, fmt.Errorf("train: sequence length %d", seqLen)
	}
	for i, e := range ex {
		if len(e.Tokens) < 2 || len(e.Mask) != len(e.Tokens) {
			return nil, fmt.Errorf("train: SFT example %d has %d tokens and %d mask entries", i, len(e.Tokens), len(e.Mask))
		}
	}
	return &SFTPacker{ex: ex, seqLen: seqLen, seed: seed, shuffle: shuffle, pad: pad, ordEp: -1}, nil
}

func (p *SFTPacker) State() data.State { return p.st }

func (p *SFTPacker) Seek(s data.State) error {
	if s.Epoch < 0 || s.Index < 0 || s.Index >= len(p.ex) || s.Offset != 0 {
		return fmt.Errorf("train: SFT packer state %+v out of range (%d examples)", s, len(p.ex))
	}
	p.st = s
	return nil
}

// at returns the example at position i of the current epoch's order.
func (p *SFTPacker) at(i int) Example {
	if !p.shuffle {
		return p.ex[i]
	}
	if p.ordEp != p.st.Epoch {
		// Fisher–Yates over a PCG stream: fixed by (seed, epoch), not by
		// the Go release's choice of rand helpers.
		r := rand.NewPCG(p.seed, uint64(p.st.Epoch)+0x5f7)
		p.order = make([]int, len(p.ex))
		for k := range p.order {
			p.order[k] = k
		}
		for k := len(p.order) - 1; k > 0; k-- {
			j := int(r.Uint64() % uint64(k+1))
			p.order[k], p.order[j] = p.order[j], p.order[k]
		}
		p.ordEp = p.st.Epoch
	}
	return p.ex[p.order[i]]
}

// Next returns the next row.
func (p *SFTPacker) Next() data.Row {
	T1 := p.seqLen + 1
	r := data.Row{Tokens: make([]int32, T1), Segments: make([]int32, T1), Positions: make([]int32, T1), Mask: make([]float32, T1-1)}
	w := make([]float32, T1) // assistant mask per token
	fill, seg := 0, int32(0)
	for fill < T1 {
		e := p.at(p.st.Index)
		if len(e.Tokens) > T1-fill && fill > 0 {
			break // starts the next row
		}
		n := min(len(e.Tokens), T1-fill)
		seg++
		for k := range n {
			r.Tokens[fill+k] = e.Tokens[k]
			r.Segments[fill+k] = seg
			r.Positions[fill+k] = int32(k)
			w[fill+k] = e.Mask[k]
		}
		fill += n
		p.st.Index++
		if p.st.Index == len(p.ex) {
			p.st = data.State{Epoch: p.st.Epoch + 1}
			break // an epoch's last row is padded
		}
	}
	for k := fill; k < T1; k++ {
		r.Tokens[k] = p.pad
	}
	for t := range r.Mask {
		if r.Segments[t] != 0 && r.Segments[t+1] == r.Segments[t] {
			r.Mask[t] = w[t+1]
		}
	}
	return r
}
