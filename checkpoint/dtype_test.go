package checkpoint

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refCode is one representable value of a small float format, for the
// brute-force reference rounding below.
type refCode struct {
	v    float64
	code uint32
}

// refTable lists the non-negative finite values of a format (plus, for
// formats that overflow to Inf, the next power of two standing for Inf, whose
// code is even, which makes the IEEE overflow rule a plain tie-to-even).
func refTable(n int, decode func(uint32) float64, inf *refCode) []refCode {
	var t []refCode
	for c := range uint32(n) {
		v := decode(c)
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Signbit(v) {
			continue
		}
		t = append(t, refCode{v, c})
	}
	if inf != nil {
		t = append(t, *inf)
	}
	sort.Slice(t, func(a, b int) bool { return t[a].v < t[b].v })
	return t
}

// refRound rounds |x| to the nearest entry of t, ties to the even code,
// saturating at the last entry.
func refRound(t []refCode, x float64) uint32 {
	x = math.Abs(x)
	i := sort.Search(len(t), func(i int) bool { return t[i].v >= x })
	if i == len(t) {
		return t[len(t)-1].code
	}
	if i == 0 || t[i].v == x {
		return t[i].code
	}
	lo, hi := t[i-1], t[i]
	switch dl, dh := x-lo.v, hi.v-x; {
	case dl < dh:
		return lo.code
	case dh < dl:
		return hi.code
	case lo.code%2 == 0:
		return lo.code
	}
	return hi.code
}

// fp8Ref decodes e4m3fn from the spec's formula (independent of the table).
func fp8Ref(b uint32) float64 {
	s := 1.0
	if b&0x80 != 0 {
		s = -1
	}
	e, m := int(b>>3)&15, float64(b&7)
	switch {
	case e == 15 && m == 7:
		return math.NaN()
	case e == 0:
		return s * m / 8 * math.Pow(2, -6)
	}
	return s * (1 + m/8) * math.Pow(2, float64(e-7))
}

func TestFP8E4M3Exhaustive(t *testing.T) {
	for b := range 256 {
		got, want := float64(FP8E4M3ToFloat32(byte(b))), fp8Ref(uint32(b))
		if math.IsNaN(want) {
			if !math.IsNaN(got) {
				t.Errorf("decode %#02x = %v, want NaN", b, got)
			}
			if enc := Float32ToFP8E4M3(float32(got)); enc != byte(b) {
				t.Errorf("encode NaN from %#02x = %#02x", b, enc)
			}
			continue
		}
		if got != want || math.Signbit(got) != math.Signbit(want) {
			t.Errorf("decode %#02x = %v, want %v", b, got, want)
		}
		if enc := Float32ToFP8E4M3(float32(got)); enc != byte(b) {
			t.Errorf("round trip %#02x -> %v -> %#02x", b, got, enc)
		}
	}
	for _, c := range []struct {
		in   float32
		want byte
	}{
		{448, 0x7e}, {449, 0x7e}, {464, 0x7e}, {1e9, 0x7e}, {float32(math.Inf(1)), 0x7e},
		{float32(math.Inf(-1)), 0xfe}, {-500, 0xfe}, {float32(math.NaN()), 0x7f},
		{0x1p-6, 0x08}, {0x1p-9, 0x01}, {0x1p-10, 0x00}, {0x1.000002p-10, 0x01}, {-0x1p-10, 0x80},
		{0x1.2p0, 0x39}, // 1.125 exactly
		{0x1.1p0, 0x38}, // 1.0625: tie of 1 (0x38) and 1.125 (0x39), to even
		{0x1.3p0, 0x3a}, // 1.1875: tie of 1.125 (0x39) and 1.25 (0x3a), to even
	} {
		if got := Float32ToFP8E4M3(c.in); got != c.want {
			t.Errorf("Float32ToFP8E4M3(%v) = %#02x, want %#02x", c.in, got, c.want)
		}
	}
}

func TestBF16Exhaustive(t *testing.T) {
	for b := range 1 << 16 {
		f := BF16ToFloat32(uint16(b))
		if math.IsNaN(float64(f)) {
			if enc := Float32ToBF16(f); !math.IsNaN(float64(BF16ToFloat32(enc))) || enc>>15 != uint16(b)>>15 {
				t.Errorf("NaN %#04x encodes to %#04x", b, enc)
			}
			continue
		}
		if enc := Float32ToBF16(f); enc != uint16(b) {
			t.Fatalf("round trip %#04x -> %v -> %#04x", b, f, enc)
		}
		// The midpoint to the next pattern (same sign) is a tie; one float32
		// ulp either side is not.
		if b&0x7fff >= 0x7f80 {
			continue
		}
		mid := uint32(b)<<16 | 0x8000
		even := uint16(b)
		if even&1 == 1 {
			even++
		}
		if got := Float32ToBF16(math.Float32frombits(mid)); got != even {
			t.Fatalf("tie above %#04x -> %#04x, want %#04x", b, got, even)
		}
		if got := Float32ToBF16(math.Float32frombits(mid - 1)); got != uint16(b) {
			t.Fatalf("below tie above %#04x -> %#04x", b, got)
		}
		if got := Float32ToBF16(math.Float32frombits(mid + 1)); got != uint16(b)+1 {
			t.Fatalf("above tie above %#04x -> %#04x", b, got)
		}
	}
}

func TestF16Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		f := F16ToFloat32(uint16(h))
		exp, man := h>>10&0x1f, h&0x3ff
		var want float64
		switch {
		case exp == 0x1f && man != 0:
			if !math.IsNaN(float64(f)) {
				t.Fatalf("%#04x should be NaN, is %v", h, f)
			}
			if enc := Float32ToF16(f); enc&0x7c00 != 0x7c00 || enc&0x3ff == 0 || enc>>15 != uint16(h)>>15 {
				t.Errorf("NaN %#04x encodes to %#04x", h, enc)
			}
			continue
		case exp == 0x1f:
			want = math.Inf(1)
		case exp == 0:
			want = float64(man) * math.Pow(2, -24)
		default:
			want = (1 + float64(man)/1024) * math.Pow(2, float64(exp-15))
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if float64(f) != want || math.Signbit(float64(f)) != math.Signbit(want) {
			t.Fatalf("F16ToFloat32(%#04x) = %v, want %v", h, f, want)
		}
		if enc := Float32ToF16(f); enc != uint16(h) {
			t.Fatalf("round trip %#04x -> %v -> %#04x", h, f, enc)
		}
		if h&0x7fff >= 0x7bff { // the overflow boundary is checked below
			continue
		}
		// Ties with the next pattern: exact in float32 (12 significant bits).
		next := F16ToFloat32(uint16(h) + 1)
		mid := float32((float64(f) + float64(next)) / 2)
		even := uint16(h)
		if even&1 == 1 {
			even++
		}
		if got := Float32ToF16(mid); got != even {
			t.Fatalf("tie %#04x/%#04x (%v) -> %#04x, want %#04x", h, h+1, mid, got, even)
		}
		toward0, away := math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1))*mid)
		if got := Float32ToF16(toward0); got != uint16(h) {
			t.Fatalf("just below tie %#04x (%v) -> %#04x", h, toward0, got)
		}
		if got := Float32ToF16(away); got != uint16(h)+1 {
			t.Fatalf("just above tie %#04x (%v) -> %#04x", h, away, got)
		}
	}
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{65504, 0x7bff}, {math.Nextafter32(65520, 0), 0x7bff}, {65520, 0x7c00}, {-65520, 0xfc00},
		{1e30, 0x7c00}, {0x1p-24, 0x0001}, {0x1p-25, 0x0000}, {0x1.000002p-25, 0x0001}, {-0x1p-26, 0x8000},
	} {
		if got := Float32ToF16(c.in); got != c.want {
			t.Errorf("Float32ToF16(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

// TestRoundingRandom compares the three encoders with a brute-force nearest
// search on random float32 values spread over all magnitudes.
func TestRoundingRandom(t *testing.T) {
	f16 := refTable(1<<15, func(c uint32) float64 { return float64(F16ToFloat32(uint16(c))) }, &refCode{65536, 0x7c00})
	bf16 := refTable(1<<15, func(c uint32) float64 { return float64(BF16ToFloat32(uint16(c))) }, &refCode{math.Pow(2, 128), 0x7f80})
	fp8 := refTable(1<<7, fp8Ref, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		f := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(f)) {
			continue
		}
		x := float64(f)
		sign := uint32(0)
		if math.Signbit(x) {
			sign = 1
		}
		if got, want := Float32ToF16(f), uint16(refRound(f16, x)|sign<<15); got != want {
			t.Fatalf("Float32ToF16(%v) = %#04x, want %#04x", f, got, want)
		}
		if got, want := Float32ToBF16(f), uint16(refRound(bf16, x)|sign<<15); got != want {
			t.Fatalf("Float32ToBF16(%v) = %#04x, want %#04x", f, got, want)
		}
		// Scale into FP8's range so most samples are not saturated or zero.
		g := float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(30)-14))
		if sign == 1 {
			g = -g
		}
		if got, want := Float32ToFP8E4M3(g), byte(refRound(fp8, float64(g))|sign<<7); got != want {
			t.Fatalf("Float32ToFP8E4M3(%v) = %#02x, want %#02x", g, got, want)
		}
	}
}

func TestOtherFP8Formats(t *testing.T) {
	for _, c := range []struct {
		name string
		got  float32
		want float64
	}{
		{"e5m2 1.0", FP8E5M2ToFloat32(0x3c), 1},
		{"e5m2 max", FP8E5M2ToFloat32(0x7b), 57344},
		{"e5m2 -inf", FP8E5M2ToFloat32(0xfc), math.Inf(-1)},
		{"e5m2 min subnormal", FP8E5M2ToFloat32(0x01), math.Pow(2, -16)},
		{"e8m0 1.0", FP8E8M0ToFloat32(127), 1},
		{"e8m0 2^-127", FP8E8M0ToFloat32(0), math.Pow(2, -127)},
		{"e8m0 2^127", FP8E8M0ToFloat32(254), math.Pow(2, 127)},
	} {
		if float64(c.got) != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if !math.IsNaN(float64(FP8E8M0ToFloat32(0xff))) {
		t.Error("e8m0 0xff should be NaN")
	}
}
