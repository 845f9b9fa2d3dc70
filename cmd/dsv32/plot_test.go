package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlotAveragesSeeds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.jsonl", `{"step":1,"reward_mean":0.1}
{"step":2,"reward_mean":0.3,"held_out_accuracy":0.5}

{"step":3,"reward_mean":0.5}
`)
	b := write("b.jsonl", `{"step":1,"reward_mean":0.3}
{"step":2,"reward_mean":0.5,"held_out_accuracy":0.7}
`)
	pa, err := readSeries(a, "step", "held_out_accuracy")
	if err != nil {
		t.Fatal(err)
	}
	if len(pa) != 1 || pa[2] != 0.5 {
		t.Fatalf("held-out series of a = %v, want only step 2 = 0.5", pa)
	}
	nested := write("n.jsonl", `{"step":1,"off_policy":{"Masked":0.25}}
{"step":2,"off_policy":null}
`)
	if pn, err := readSeries(nested, "step", "off_policy.Masked"); err != nil || len(pn) != 1 || pn[1] != 0.25 {
		t.Fatalf("nested series = %v, %v; want step 1 = 0.25 only", pn, err)
	}
	ra, _ := readSeries(a, "step", "reward_mean")
	rb, _ := readSeries(b, "step", "reward_mean")
	got := meanSeries([]map[float64]float64{ra, rb})
	want := [][2]float64{{1, 0.2}, {2, 0.4}} // step 3 is only in a
	if len(got) != len(want) {
		t.Fatalf("mean = %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i].X != w[0] || got[i].Y < w[1]-1e-12 || got[i].Y > w[1]+1e-12 {
			t.Fatalf("mean[%d] = %v, want %v", i, got[i], w)
		}
	}

	out := filepath.Join(dir, "r.png")
	c := plotCmd{Y: "reward_mean", X: "step", Out: out, Runs: []string{"seeds=" + a, "seeds=" + b, "one=" + a}}
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("chart not written: %v", err)
	}

	for _, tc := range []struct {
		runs []string
		want string
	}{
		{[]string{"nolabel"}, "want LABEL=PATH"},
		{[]string{"x=" + filepath.Join(dir, "missing.jsonl")}, "no such file"},
		{[]string{"x=" + write("bad.jsonl", "{\"step\":1\n")}, "bad.jsonl:1"},
		{[]string{"x=" + a}, "no line with both"},
	} {
		c := plotCmd{Y: "loss", X: "step", Out: out, Runs: tc.runs}
		if tc.want != "no line with both" {
			c.Y = "reward_mean"
		}
		err := c.Run()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("runs %v: err %v, want it to mention %q", tc.runs, err, tc.want)
		}
	}
}
