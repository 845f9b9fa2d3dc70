package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
)

// tinyJSON is a small byte-level tokenizer.json: the 256 byte tokens, a few
// merges that spell " hello", one Split and ByteLevel, one added token.
var tinyJSON = func() string {
	vocab := map[string]int{}
	for b := range 256 {
		vocab[string(byteToRune[b])] = b
	}
	merges := []string{"h e", "l l", "he ll", "hell o", "Ġ hello"}
	for _, m := range merges {
		vocab[strings.ReplaceAll(m, " ", "")] = len(vocab)
	}
	v, _ := json.Marshal(vocab)
	mg, _ := json.Marshal(merges)
	return fmt.Sprintf(`{"version":"1.0","truncation":null,"padding":null,`+
		`"added_tokens":[{"id":%d,"content":"<think>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],`+
		`"normalizer":null,`+
		`"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":" ?[A-Za-z]+| ?[^A-Za-z\\s]+|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},`+
		`"post_processor":null,"decoder":{"type":"ByteLevel"},`+
		`"model":{"type":"BPE","dropout":null,"unk_token":null,"vocab":%s,"merges":%s}}`, len(vocab), v, mg)
}()
