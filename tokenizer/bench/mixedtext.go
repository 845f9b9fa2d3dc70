// Package bench holds what the tokenizer's speed comparison needs on both
// sides: MixedText, the deterministic text that BenchmarkEncode and
// `dsv32 tokenize --bench` encode, and (beside this file) the Python and
// Node scripts that run Hugging Face tokenizers on the same file.
package bench

import (
	"math/rand/v2"
	"strings"
)

var (
	words = strings.Fields(`the of and to in is was that for on with as by it at from his an were are which this be or
has had not but what all when can there one been their more if will would so about up out them into some could time
people than first new these two may then do any other like our over such even most made after also did many before
through where between system model tokenizer server training attention sparse expert layer memory request response
value function return error context window thinking reasoning benchmark throughput latency gradient optimizer`)
	syllables = strings.Fields(`ka ri to mu sen pla tor ex in ver ab lo qui zen dra mor ul fin gro shi pe ta con
ment ing tion able ous ist ly er est re un pre`)
	code = []string{
		"func (s *Server) handle(w http.ResponseWriter, r *http.Request) {\n\tif err := s.check(r); err != nil {\n\t\thttp.Error(w, err.Error(), 400)\n\t\treturn\n\t}\n}\n",
		"def softmax(x):\n    m = x.max(axis=-1, keepdims=True)\n    e = np.exp(x - m)\n    return e / e.sum(axis=-1, keepdims=True)\n",
		"for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product\n",
		"const config = { lr: 3e-4, batch: 512, warmup: 2000, betas: [0.9, 0.95] };\n",
		"SELECT id, name, COUNT(*) AS n FROM users WHERE created_at > '2024-01-01' GROUP BY id, name;\n",
		"    if x_{i+1} != nil && len(xs) >= 0x7f { return -1 }\n",
	}
	cjk   = []rune("的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日软件模型训练推理注意力稀疏专家")
	kana  = []rune("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネノ")
	other = []string{"Привет, как дела? Всё хорошо.", "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया, आप कैसे हैं?", "한국어 텍스트와 숫자 123",
		"Ünïcödé façade naïve café — “quotes” ‘single’ … ±×÷", "Ελληνικά γράμματα και λέξεις"}
	emoji = []string{"🙂", "👍🏽", "🚀", "🎉", "👨‍👩‍👧", "🇯🇵", "❤️", "🔥"}
)

// MixedText returns about size bytes of deterministic text for a seed:
// English-like prose (known and made-up words), code, numbers, Chinese and
// Japanese, other scripts, emoji and runs of whitespace.
func MixedText(size int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var sb strings.Builder
	sb.Grow(size + 1024)
	for sb.Len() < size {
		switch k := r.IntN(100); {
		case k < 40: // prose
			for range 3 + r.IntN(6) {
				n := 5 + r.IntN(15)
				for i := range n {
					w := words[r.IntN(len(words))]
					if r.IntN(5) == 0 {
						w = ""
						for range 2 + r.IntN(3) {
							w += syllables[r.IntN(len(syllables))]
						}
					}
					if i == 0 {
						w = strings.ToUpper(w[:1]) + w[1:]
					} else {
						sb.WriteByte(' ')
					}
					sb.WriteString(w)
					if r.IntN(12) == 0 {
						sb.WriteByte(',')
					}
				}
				sb.WriteString([]string{". ", "? ", "! ", ".\n"}[r.IntN(4)])
			}
			sb.WriteString("\n\n")
		case k < 65: // code
			sb.WriteString(code[r.IntN(len(code))])
		case k < 80: // Chinese and Japanese
			for range 10 + r.IntN(40) {
				if r.IntN(4) == 0 {
					sb.WriteRune(kana[r.IntN(len(kana))])
				} else {
					sb.WriteRune(cjk[r.IntN(len(cjk))])
				}
				if r.IntN(15) == 0 {
					sb.WriteString("，")
				}
			}
			sb.WriteString("。\n")
		case k < 88: // numbers
			for range 3 + r.IntN(8) {
				switch r.IntN(3) {
				case 0:
					sb.WriteString(itoa(r.IntN(1_000_000)))
				case 1:
					sb.WriteString(itoa(r.IntN(100)) + "." + itoa(r.IntN(100000)))
				default:
					sb.WriteString("2025-" + itoa(1+r.IntN(12)) + "-" + itoa(1+r.IntN(28)))
				}
				sb.WriteByte(' ')
			}
			sb.WriteByte('\n')
		case k < 95: // other scripts
			sb.WriteString(other[r.IntN(len(other))])
			sb.WriteByte('\n')
		default: // emoji and whitespace
			for range 1 + r.IntN(5) {
				sb.WriteString(emoji[r.IntN(len(emoji))])
				sb.WriteString(strings.Repeat([]string{" ", "\t", "\n", "   "}[r.IntN(4)], 1+r.IntN(6)))
			}
		}
	}
	return sb.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
