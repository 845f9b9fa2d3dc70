package checkpoint

import (
	"math"
	"sync"
)

// DType is an element type as spelled in safetensors headers.
type DType string

// The dtypes this package knows. Float32 decodes the float ones; Int64 widens
// the integer ones and BOOL; Raw returns any of them.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	U16    DType = "U16"
	I16    DType = "I16"
	U32    DType = "U32"
	I32    DType = "I32"
	U64    DType = "U64"
	I64    DType = "I64"
	F8E4M3 DType = "F8_E4M3" // e4m3fn: bias 7, no infinities, max ±448
	F8E5M2 DType = "F8_E5M2" // IEEE-like: bias 15, with infinities, max ±57344
	F8E8M0 DType = "F8_E8M0" // unsigned power of two 2^(e-127) (ue8m0 scales); 0xFF is NaN
	F16    DType = "F16"
	BF16   DType = "BF16"
	F32    DType = "F32"
	F64    DType = "F64"
)

// Size is the number of bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E4M3, F8E5M2, F8E8M0:
		return 1
	case U16, I16, F16, BF16:
		return 2
	case U32, I32, F32:
		return 4
	case U64, I64, F64:
		return 8
	}
	return 0
}

// IsFloat reports whether Float32 decodes this dtype.
func (d DType) IsFloat() bool {
	switch d {
	case F8E4M3, F8E5M2, F8E8M0, F16, BF16, F32, F64:
		return true
	}
	return false
}

// IsInt reports whether Int64 decodes this dtype (integers and BOOL).
func (d DType) IsInt() bool {
	switch d {
	case BOOL, U8, I8, U16, I16, U32, I32, U64, I64:
		return true
	}
	return false
}

// BF16ToFloat32 widens a bfloat16 bit pattern; it is exact.
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// Float32ToBF16 rounds to the nearest bfloat16, ties to even. Values past the
// largest bfloat16 become ±Inf; NaN stays NaN (quiet, sign kept).
func Float32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: truncate, force a mantissa bit so it stays NaN
		return uint16(u>>16) | 0x0040
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// F16ToFloat32 widens an IEEE binary16 bit pattern; it is exact (NaN payloads kept).
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	case man == 0: // ±0
		return math.Float32frombits(sign)
	}
	// Subnormal: man·2^-24, exact in float32.
	f := float32(man) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// Float32ToF16 rounds to the nearest IEEE binary16, ties to even. Values past
// 65504 (after rounding) become ±Inf; NaN stays NaN (quiet, sign kept).
func Float32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	a := u & 0x7fffffff
	switch {
	case a > 0x7f800000: // NaN
		return sign | 0x7e00 | uint16(a>>13)&0x3ff
	case a >= 0x477ff000: // ≥ 65520 (midpoint of 65504 and 2^16, rounds up): Inf
		return sign | 0x7c00
	case a >= 0x38800000: // ≥ 2^-14: normal half
		// Re-bias the exponent, then round the 23-bit mantissa to 10 bits;
		// a mantissa carry correctly bumps the exponent.
		a -= (127 - 15) << 23
		a += 0xfff + (a>>13)&1
		return sign | uint16(a>>13)
	case a < 0x33000000: // < 2^-25: rounds to ±0 (2^-25 itself is a tie to 0)
		return sign
	}
	// Subnormal half: the result is round(|f| / 2^-24) to even, in 0..1024
	// (1024 is the smallest normal, which the bit layout encodes for free).
	exp := a >> 23               // 102..112
	man := a&0x7fffff | 0x800000 // 24-bit significand; |f| = man·2^(exp-150)
	shift := 150 - 24 - exp      // |f|/2^-24 = man >> shift, shift in 14..24
	q := man >> shift            // truncated
	rem := man & (1<<shift - 1)  // discarded bits
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return sign | uint16(q)
}

// FP8E4M3ToFloat32 decodes an e4m3fn byte: 1 sign, 4 exponent bits (bias 7),
// 3 mantissa bits, no infinities, S.1111.111 is NaN, subnormals m/8·2^-6.
func FP8E4M3ToFloat32(b byte) float32 {
	return fp8e4m3Table[b]
}

var fp8e4m3Table = func() (t [256]float32) {
	for i := range t {
		b := byte(i)
		exp := int(b>>3) & 0xf
		man := float64(b & 7)
		var v float64
		switch {
		case exp == 0xf && man == 7:
			v = math.NaN()
		case exp == 0:
			v = man / 8 * math.Ldexp(1, -6)
		default:
			v = (1 + man/8) * math.Ldexp(1, exp-7)
		}
		if b&0x80 != 0 {
			v = -v
		}
		t[i] = float32(v)
	}
	return t
}()

// Float32ToFP8E4M3 rounds to the nearest e4m3fn value, ties to even,
// saturating at ±448 (±Inf too). NaN becomes S.1111.111.
func Float32ToFP8E4M3(f float32) byte {
	u := math.Float32bits(f)
	sign := byte(u>>24) & 0x80
	a := u & 0x7fffffff
	switch {
	case a > 0x7f800000: // NaN
		return sign | 0x7f
	case a >= 0x43e00000: // ≥ 448: saturate
		return sign | 0x7e
	case a >= 0x3c800000: // ≥ 2^-6: normal
		a -= (127 - 7) << 23
		a += 0x7ffff + (a>>20)&1
		return sign | byte(a>>20) // below 448, so rounding ends at 448 (0x7e) at most
	case a < 0x3a800000: // < 2^-10, at most half the smallest subnormal 2^-9: ±0
		return sign
	}
	// Subnormal: round(|f| / 2^-9) to even, in 0..8 (8 is the smallest normal).
	exp := a >> 23               // 117..120
	man := a&0x7fffff | 0x800000 // |f| = man·2^(exp-150)
	shift := 150 - 9 - exp       // 21..24
	q := man >> shift
	rem := man & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return sign | byte(q)
}

// FP8E5M2ToFloat32 decodes an e5m2 byte, which is the high byte of a binary16.
func FP8E5M2ToFloat32(b byte) float32 { return F16ToFloat32(uint16(b) << 8) }

// FP8E8M0ToFloat32 decodes an unsigned e8m0 scale: 2^(b-127), 0xFF is NaN.
func FP8E8M0ToFloat32(b byte) float32 {
	if b == 0xff {
		return float32(math.NaN())
	}
	if b == 0 { // 2^-127 is a float32 subnormal
		return math.Float32frombits(0x00400000)
	}
	return math.Float32frombits(uint32(b) << 23)
}

// f16Table maps every binary16 pattern to float32; built on first use.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = F16ToFloat32(uint16(i))
	}
	return t
})
