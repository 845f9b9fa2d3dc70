package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// maxSSELine bounds one SSE line, so a hostile endpoint cannot make us buffer
// without end.
const maxSSELine = 16 << 20

// ReadStream reads an OpenAI chat-completions SSE stream ("data: {chunk}"
// events ending with "data: [DONE]") and assembles the reply: reasoning and
// content fragments are concatenated, tool-call fragments are joined by
// index. onDelta, if not nil, sees each fragment. A stream that ends without
// [DONE] is an error, as is any chunk that is not valid JSON.
func ReadStream(r io.Reader, onDelta func(Delta)) (Response, error) {
	var (
		acc   streamAcc
		data  []string
		br    = bufio.NewReaderSize(r, 64<<10)
		event int
	)
	for {
		line, err := readLine(br)
		if err != nil && err != io.EOF {
			return Response{}, fmt.Errorf("read stream: %w", err)
		}
		eof := err == io.EOF
		switch {
		case line == "":
		case strings.HasPrefix(line, ":"): // comment / keep-alive
		case strings.HasPrefix(line, "data:"):
			v := strings.TrimPrefix(line, "data:")
			data = append(data, strings.TrimPrefix(v, " "))
		default: // event:, id:, retry: and unknown fields are ignored
		}
		if (line == "" || eof) && len(data) > 0 { // end of an event
			payload := strings.Join(data, "\n")
			data = data[:0]
			event++
			if strings.TrimSpace(payload) == "[DONE]" {
				return acc.response(), nil
			}
			if err := acc.apply([]byte(payload), onDelta); err != nil {
				return Response{}, fmt.Errorf("stream event %d: %w", event, err)
			}
		}
		if eof {
			return Response{}, errors.New("stream ended without [DONE]")
		}
	}
}

// readLine reads one line without its "\n" or "\r\n", up to maxSSELine.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxSSELine {
			return "", fmt.Errorf("SSE line longer than %d bytes", maxSSELine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		buf = bytes.TrimSuffix(buf, []byte("\r"))
		return string(buf), err
	}
}

// streamAcc accumulates chunks of choice 0.
type streamAcc struct {
	reasoning, content strings.Builder
	calls              map[int]*ToolCall
	finish             string
	usage              Usage
}

func (a *streamAcc) apply(payload []byte, onDelta func(Delta)) error {
	var chunk wireResponse
	if err := json.Unmarshal(payload, &chunk); err != nil {
		return fmt.Errorf("decode chunk: %w", err)
	}
	if chunk.Error != nil {
		return fmt.Errorf("endpoint error: %s", chunk.Error.Message)
	}
	if chunk.Usage != nil {
		a.usage = *chunk.Usage
	}
	for _, ch := range chunk.Choices {
		if ch.Index != 0 {
			continue
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			a.finish = *ch.FinishReason
		}
		d := ch.Delta
		if d == nil {
			d = ch.Message
		}
		if d == nil {
			continue
		}
		if d.ReasoningContent != nil && *d.ReasoningContent != "" {
			a.reasoning.WriteString(*d.ReasoningContent)
			if onDelta != nil {
				onDelta(Delta{Reasoning: *d.ReasoningContent})
			}
		}
		if d.Content != nil && *d.Content != "" {
			a.content.WriteString(*d.Content)
			if onDelta != nil {
				onDelta(Delta{Content: *d.Content})
			}
		}
		for i, tc := range d.ToolCalls {
			idx := i
			if tc.Index != nil {
				idx = *tc.Index
			}
			if idx < 0 || idx > 1024 {
				return fmt.Errorf("tool call index %d out of range", idx)
			}
			if a.calls == nil {
				a.calls = map[int]*ToolCall{}
			}
			c := a.calls[idx]
			if c == nil {
				c = &ToolCall{}
				a.calls[idx] = c
			}
			if tc.ID != "" {
				c.ID = tc.ID
			}
			if tc.Function.Name != "" {
				c.Name = tc.Function.Name
			}
			c.Arguments += string(tc.Function.Arguments)
			if onDelta != nil {
				onDelta(Delta{Index: idx, ToolCall: &ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: string(tc.Function.Arguments)}})
			}
		}
	}
	return nil
}

func (a *streamAcc) response() Response {
	m := Message{Role: RoleAssistant, ReasoningContent: a.reasoning.String(), Content: a.content.String()}
	idx := make([]int, 0, len(a.calls))
	for i := range a.calls {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		m.ToolCalls = append(m.ToolCalls, *a.calls[i])
	}
	return Response{Message: m, FinishReason: a.finish, Usage: a.usage}
}
