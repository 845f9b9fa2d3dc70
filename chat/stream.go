package chat

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"
)

// DeltaKind says which part of the assistant message a Delta extends.
type DeltaKind int

const (
	ReasoningDelta DeltaKind = iota + 1 // more reasoning_content
	ContentDelta                        // more content
	ToolCallDelta                       // one whole tool call
)

func (k DeltaKind) String() string {
	switch k {
	case ReasoningDelta:
		return "reasoning"
	case ContentDelta:
		return "content"
	case ToolCallDelta:
		return "tool_call"
	}
	return "DeltaKind(?)"
}

// Delta is a piece of the assistant message, ready to send to a client.
//
// Reasoning and content arrive as text fragments. A tool call arrives whole,
// name and arguments together, as soon as its invoke block is closed: its
// arguments are only known then (a parameter's value ends at its close tag,
// and a string value is JSON-quoted as a whole), and one OpenAI stream chunk
// may carry a complete call. A long argument therefore arrives in one piece.
type Delta struct {
	Kind     DeltaKind
	Text     string   // ReasoningDelta, ContentDelta: the new text
	Index    int      // ToolCallDelta: the call's position in the message's ToolCalls
	ToolCall ToolCall // ToolCallDelta: the call; it has no ID
}

// StreamParser parses a completion as it is generated. Feed it text with
// Push, then call Finish. The deltas it returns, put together, are exactly
// the message Parse returns for the whole text.
//
// Text is released as soon as it is certain where it belongs: the parser
// holds back a tail that could be the start of </think>, of the EOS string
// or of "\n\n<｜DSML｜function_calls", and an incomplete UTF-8 sequence, until
// the following text decides it. Push returns an error as soon as the text
// can no longer parse (a special token inside content, text after EOS, a
// malformed tool block); the error is sticky. Text inside a tool block is
// buffered until its invoke closes. Deltas already returned are not taken
// back when a later error is found.
type StreamParser struct {
	thinking bool
	buf      []byte // text not yet consumed starts at buf[pos]
	pos      int
	scan     int // where the next search for a stop may start (find)
	base     int // bytes dropped from the front of buf, for error offsets
	state    streamState

	reasoning, content strings.Builder
	name               string  // the open invoke's function name
	args               []param // the open invoke's parameters
	calls              []ToolCall

	out      []Delta // deltas of the current Push or Finish
	err      error
	finished bool
}

type streamState int

const (
	inReasoning    streamState = iota // before </think>
	inContent                         // before EOS or the tool block
	beforeInvoke                      // want ">\n" and then an invoke or the block's close tag
	inInvokeHead                      // want ' name="F">\n' then a parameter or the invoke's close tag
	inParameter                       // want ' name="K" string="true|false">V<' then "/｜DSML｜parameter"
	afterParameter                    // want ">\n" then a parameter or the invoke's close tag
	afterBlock                        // want EOS or the end of the text
	atEnd                             // after EOS: nothing may follow
	done                              // the text ended where the format allows it
)

// NewStreamParser returns a parser for one completion; thinking says whether
// the prompt opened a think block (the text then starts inside it).
func NewStreamParser(thinking bool) *StreamParser {
	p := &StreamParser{thinking: thinking, state: inContent}
	if thinking {
		p.state = inReasoning
	}
	return p
}

// Push adds the next piece of generated text and returns the deltas it makes
// certain. A piece may end anywhere, even inside a UTF-8 sequence.
func (p *StreamParser) Push(text string) ([]Delta, error) {
	if p.err != nil {
		return nil, p.err
	}
	if p.finished {
		return nil, errors.New("chat: StreamParser.Push after Finish")
	}
	p.buf = append(p.buf, text...)
	return p.advance(false)
}

// Finish ends the text and returns the last deltas and the whole message,
// equal to what Parse returns for the concatenated text.
func (p *StreamParser) Finish() ([]Delta, Message, error) {
	if p.err != nil {
		return nil, Message{}, p.err
	}
	if p.finished {
		return nil, Message{}, errors.New("chat: StreamParser.Finish called twice")
	}
	p.finished = true
	deltas, err := p.advance(true)
	if err != nil {
		return nil, Message{}, err
	}
	msg := Message{Role: RoleAssistant, Content: p.content.String(), ReasoningContent: p.reasoning.String(), ToolCalls: p.calls}
	return deltas, msg, nil
}

func (p *StreamParser) advance(eof bool) ([]Delta, error) {
	p.out = nil
	if err := p.run(eof); err != nil {
		p.err = err
		return nil, err
	}
	if p.pos > 1<<16 && p.pos > len(p.buf)/2 { // drop consumed text
		p.base += p.pos
		p.buf = append(p.buf[:0], p.buf[p.pos:]...)
		p.scan = max(0, p.scan-p.pos)
		p.pos = 0
	}
	return p.out, nil
}

// run consumes as much of buf as is certain. It mirrors Parse and
// parseToolCalls step by step; each state is one readUntil there.
func (p *StreamParser) run(eof bool) error {
	for {
		rest := p.buf[p.pos:]
		switch p.state {
		case inReasoning, inContent:
			kind, end := ReasoningDelta, ThinkEnd
			if p.state == inContent {
				kind, end = ContentDelta, EOS
			}
			at, stop := p.find(end, toolCallsStart)
			if at < 0 {
				if eof {
					if kind == ReasoningDelta {
						return p.errorf(len(p.buf), "thinking mode: no %s before the tool calls or the end", ThinkEnd)
					}
					return p.errorf(len(p.buf), "no %s and no tool calls at the end of the content", EOS)
				}
				return p.emit(kind, p.pos+safeLen(rest, end, toolCallsStart))
			}
			if kind == ReasoningDelta && stop == toolCallsStart {
				return p.errorf(at, "thinking mode: no %s before the tool calls or the end", ThinkEnd)
			}
			if err := p.emit(kind, at); err != nil {
				return err
			}
			p.pos = at + len(stop)
			switch stop {
			case ThinkEnd:
				p.state = inContent
			case EOS:
				p.state = atEnd
			case toolCallsStart:
				p.state = beforeInvoke
			}

		case atEnd:
			if len(rest) > 0 {
				return p.errorf(p.pos, "unexpected text after %s: %s", EOS, shorten(string(rest)))
			}
			return nil

		case beforeInvoke, afterParameter:
			next, closing := invokeOpen, functionCallsE
			if p.state == afterParameter {
				next, closing = parameterOpen, invokeClose
			}
			at, stop := p.find(next, closing)
			if at < 0 {
				switch {
				case !eof && (isPrefix(rest, ">\n"+next) || isPrefix(rest, ">\n"+closing)):
					return nil // wait for more
				case eof && p.state == beforeInvoke && len(rest) == 0:
					p.state = done // the reference stops at the end of the text
					return nil
				case eof && p.state == afterParameter && string(rest) == ">\n":
					p.endInvoke()
					p.pos, p.state = len(p.buf), done
					return nil
				}
				return p.errorf(p.pos, `tool calls: want ">\n" and then %s or %s, got %s`, next, closing, shorten(string(rest)))
			}
			if between := string(p.buf[p.pos:at]); between != ">\n" {
				return p.errorf(p.pos, `tool calls: want ">\n" before %s, got %s`, stop, shorten(between))
			}
			p.pos = at + len(stop)
			switch stop {
			case invokeOpen:
				p.state = inInvokeHead
			case functionCallsE:
				p.state = afterBlock
			case parameterOpen:
				p.state = inParameter
			case invokeClose:
				p.endInvoke()
				p.state = beforeInvoke
			}

		case inInvokeHead:
			at, stop := p.find(parameterOpen, invokeClose)
			if at < 0 && !eof {
				return nil
			}
			head := rest
			if at >= 0 {
				head = p.buf[p.pos:at]
			}
			name, ok := matchInvokeName(string(head))
			if !ok {
				return p.errorf(p.pos, `tool calls: want ' name="NAME">' and a newline after %s, got %s`, invokeOpen, shorten(string(head)))
			}
			p.name, p.args = name, nil
			if at < 0 { // eof: the reference takes the call and stops
				p.endInvoke()
				p.pos, p.state = len(p.buf), done
				return nil
			}
			p.pos = at + len(stop)
			if stop == parameterOpen {
				p.state = inParameter
			} else {
				p.endInvoke()
				p.state = beforeInvoke
			}

		case inParameter:
			at, _ := p.find(parameterClose)
			if at < 0 {
				if eof {
					return p.errorf(p.pos, "tool call %q: the text ends inside a parameter", p.name)
				}
				return nil
			}
			body := string(p.buf[p.pos:at])
			q, ok := matchParameter(body)
			if !ok {
				return p.errorf(p.pos, `tool call %q: want ' name="KEY" string="true|false">VALUE<' in a parameter, got %s`, p.name, shorten(body))
			}
			for _, a := range p.args {
				if a.key == q.key {
					return p.errorf(p.pos, "tool call %q: duplicate parameter %q", p.name, q.key)
				}
			}
			p.args = append(p.args, q)
			p.pos = at + len(parameterClose)
			p.state = afterParameter

		case afterBlock:
			switch {
			case bytes.HasPrefix(rest, []byte(EOS)):
				p.pos += len(EOS)
				p.state = atEnd
				continue
			case len(rest) == 0 || (!eof && isPrefix(rest, EOS)):
				return nil
			}
			return p.errorf(p.pos, "unexpected text after the tool calls: %s", shorten(string(rest)))

		case done:
			return nil
		}
	}
}

// find returns the position of the earliest of stops in the unconsumed text,
// or -1. A search that fails remembers where the next one may resume, so that
// text waiting for a stop is not scanned again on every Push. (When a stop is
// found, pos moves past it, hence past scan, before the next search.)
func (p *StreamParser) find(stops ...string) (int, string) {
	from := max(p.pos, p.scan)
	at, found, longest := -1, "", 0
	for _, s := range stops {
		longest = max(longest, len(s))
		if k := bytes.Index(p.buf[from:], []byte(s)); k >= 0 && (at < 0 || from+k < at) {
			at, found = from+k, s
		}
	}
	if at < 0 {
		p.scan = max(p.pos, len(p.buf)-longest+1)
	}
	return at, found
}

// emit releases buf[pos:to] as reasoning or content.
func (p *StreamParser) emit(kind DeltaKind, to int) error {
	if to <= p.pos {
		return nil
	}
	text := string(p.buf[p.pos:to])
	acc, what := &p.content, "content"
	if kind == ReasoningDelta {
		acc, what = &p.reasoning, "reasoning"
	}
	start := acc.Len()
	acc.WriteString(text)
	// A special token may straddle the previous delta and this one.
	from := max(0, start-len(BOS)) // BOS and EOS are the longest special tokens
	if err := checkSpecial(acc.String()[from:], what, 0); err != nil {
		pe := err.(*ParseError)
		return p.errorf(p.pos-(start-from)+pe.Offset, "%s", pe.Reason)
	}
	p.out = append(p.out, Delta{Kind: kind, Text: text})
	p.pos = to
	return nil
}

func (p *StreamParser) endInvoke() {
	call := newToolCall(p.name, p.args)
	p.out = append(p.out, Delta{Kind: ToolCallDelta, Index: len(p.calls), ToolCall: call})
	p.calls = append(p.calls, call)
	p.name, p.args = "", nil
}

// errorf returns a ParseError at position i of buf.
func (p *StreamParser) errorf(i int, format string, args ...any) error {
	return parseErrorf(p.base+i, format, args...)
}

// safeLen returns how much of s can be released: all of it but the longest
// tail that is the start of one of stops, and but an incomplete UTF-8
// sequence at the end.
func safeLen(s []byte, stops ...string) int {
	n := len(s)
	for _, stop := range stops {
		for k := min(len(s), len(stop)-1); k > 0; k-- {
			if len(s)-k < n && bytes.HasPrefix([]byte(stop), s[len(s)-k:]) {
				n = len(s) - k
				break
			}
		}
	}
	// Back off over an incomplete rune at the end of s[:n].
	for k := 1; k <= utf8.UTFMax-1 && k <= n; k++ {
		c := s[n-k]
		if utf8.RuneStart(c) {
			if c >= utf8.RuneSelf && !utf8.FullRune(s[n-k:n]) {
				n -= k
			}
			break
		}
	}
	return n
}

// isPrefix reports whether s is a prefix of full.
func isPrefix(s []byte, full string) bool {
	return len(s) <= len(full) && string(s) == full[:len(s)]
}
