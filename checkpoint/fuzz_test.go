package checkpoint

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"testing"
)

// openBytes is Open for a file held in memory.
func openBytes(buf []byte) (*Checkpoint, error) {
	c := &Checkpoint{path: "fuzz", tensors: map[string]tensor{}, metadata: map[string]string{}}
	c.SetBlockSize([2]int{2, 2})
	if err := c.addMapped(&mapping{path: "fuzz", data: buf, release: func() error { return nil }}); err != nil {
		return nil, err
	}
	c.sortNames()
	return c, nil
}

// encode is Write to memory.
func encode(t testing.TB, ts []Tensor, meta map[string]string) []byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := encodeFile(w, ts, meta); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return b.Bytes()
}

// FuzzParseHeader feeds arbitrary files to the header parser and, when it
// accepts one, decodes every tensor and checks that re-encoding round-trips.
// Nothing may panic.
func FuzzParseHeader(f *testing.F) {
	f.Add(encode(f, sampleTensors(5), map[string]string{"format": "pt"}))
	w, s, err := QuantizeFP8("a.weight", []int{3, 5}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, [2]int{2, 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encode(f, []Tensor{w, s}, nil))
	for _, seed := range []string{
		`{}`, `{"__metadata__":{"a":"b"}}`, `{"w":5}`, `[]`,
		`{"w":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]},"w_scale_inv":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]}}`,
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
		`{"w":{"dtype":"BF16","shape":[-1],"data_offsets":[0,2]}}`,
	} {
		f.Add(file(seed, make([]byte, 8)))
	}
	f.Add(withLen(1<<62, `{}`))
	if torch, err := os.ReadFile("testdata/pytorch.safetensors"); err == nil {
		f.Add(torch)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		infos, _, err := parseHeader(buf)
		if err != nil {
			return
		}
		for _, info := range infos {
			if info.Begin < 8 || info.End < info.Begin || info.End > int64(len(buf)) ||
				info.End-info.Begin != int64(info.Numel()*info.DType.Size()) {
				t.Fatalf("accepted bad extent %+v in %d bytes", info, len(buf))
			}
		}
		c, err := openBytes(buf)
		if err != nil {
			return // e.g. a duplicate name across files cannot happen here; parse already passed
		}
		var ts []Tensor
		for _, name := range c.Names() {
			raw, info, err := c.Raw(name)
			if err != nil {
				t.Fatal(err)
			}
			if info.DType.IsFloat() {
				c.Float32(name) // may fail on bad scales; must not panic
			} else {
				c.Int64(name)
			}
			ts = append(ts, Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
		}
		c2, err := openBytes(encode(t, ts, c.Metadata()))
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if !slices.Equal(c.Names(), c2.Names()) {
			t.Fatalf("names %v became %v", c.Names(), c2.Names())
		}
		for _, tensor := range ts {
			raw, info, _ := c2.Raw(tensor.Name)
			if !bytes.Equal(raw, tensor.Data) || info.DType != tensor.DType || !slices.Equal(info.Shape, tensor.Shape) {
				t.Fatalf("tensor %q changed in the round trip", tensor.Name)
			}
		}
	})
}
