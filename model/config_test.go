package model_test

import (
	"math"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// The 671B figures of dsa.md §11, exactly.
func TestCountsOfDeepSeekV32(t *testing.T) {
	cfg, err := model.LoadConfig(testutil.Testdata("deepseek-v3.2-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Count()
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"total", n.Total, 671_877_944_064},
		{"indexers", n.Indexers, 851_524_864},
		{"routed experts", n.RoutedExperts, 653_908_770_816},
		{"activated", n.Activated, 38_403_822_336},
		{"mtp", n.MTP, 11_624_027_648},
		{"mtp with copies", n.MTPWithCopies, 13_477_385_728},
		{"on disk", n.OnDisk, 685_355_329_792},
		{"cache bytes per token (bf16)", n.CacheBytesBF16, 85_888},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if s := cfg.SoftmaxScale(); s < 0.1352337 || s > 0.1352338 {
		t.Errorf("softmax scale %.8f, want 0.13523378", s)
	}
	// YaRN: dims i ≤ 10 keep their frequency, dims ≥ 23 are divided by 40.
	f := cfg.RopeFrequencies()
	base := func(i int) float64 { return 1 / math.Pow(10000, float64(2*i)/64) }
	if r := f[10] / base(10); r < 0.999999 || r > 1.000001 {
		t.Errorf("f'_10 / f_10 = %g, want 1", r)
	}
	if r := f[23] / base(23); r < 1/40.0-1e-9 || r > 1/40.0+1e-9 {
		t.Errorf("f'_23 / f_23 = %g, want 1/40", r)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	base := `"model_type":"deepseek_v32","vocab_size":320,"hidden_size":64,"intermediate_size":128,
	"moe_intermediate_size":32,"num_hidden_layers":3,"first_k_dense_replace":1,"num_attention_heads":4,
	"q_lora_rank":48,"kv_lora_rank":32,"qk_nope_head_dim":16,"qk_rope_head_dim":8,"v_head_dim":16,
	"n_routed_experts":8,"n_shared_experts":1,"num_experts_per_tok":2,"n_group":4,"topk_group":2,
	"index_n_heads":16,"index_head_dim":32,"index_topk":16,"max_position_embeddings":4096`
	cases := []struct {
		name, extra, field string
	}{
		{"ok", ``, ""},
		{"groups do not divide experts", `,"n_group":3`, "n_group"},
		{"k larger than experts", `,"num_experts_per_tok":9`, "num_experts_per_tok"},
		{"topk_group too big", `,"topk_group":5`, "topk_group"},
		{"odd rope", `,"qk_rope_head_dim":7`, "qk_rope_head_dim"},
		{"scoring", `,"scoring_func":"softmax"`, "scoring_func"},
		{"topk method", `,"topk_method":"greedy"`, "topk_method"},
		{"rope wider than indexer", `,"qk_rope_head_dim":40`, "qk_rope_head_dim"},
		{"zero topk", `,"index_topk":0`, "index_topk"},
		{"model type", `,"model_type":"llama"`, "model_type"},
		{"rope spellings disagree", `,"rope_theta":10000,"rope_parameters":{"rope_type":"default","rope_theta":500}`, "rope_parameters"},
		{"layer types disagree", `,"mlp_layer_types":["dense","dense","sparse"]`, "first_k_dense_replace"},
		{"bad quantization", `,"quantization_config":{"quant_method":"fp8","weight_block_size":[128]}`, "weight_block_size"},
		{"yarn without original", `,"rope_scaling":{"type":"yarn","factor":4}`, "original_max_position_embeddings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := model.ParseConfig([]byte("{" + base + c.extra + "}"))
			if c.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %v does not name %s", err, c.field)
			}
		})
	}
}

func TestBothRopeSpellings(t *testing.T) {
	v4 := `{"model_type":"deepseek_v3","vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,
	"first_k_dense_replace":1,"num_attention_heads":2,"q_lora_rank":4,"kv_lora_rank":4,"qk_nope_head_dim":2,
	"qk_rope_head_dim":2,"v_head_dim":2,"max_position_embeddings":4096,"rope_theta":500,
	"rope_scaling":{"type":"yarn","factor":4,"original_max_position_embeddings":1024,"beta_fast":32,"beta_slow":1,"mscale":1,"mscale_all_dim":1}}`
	v5 := strings.Replace(strings.Replace(v4, `"rope_theta":500,`, "", 1), `"rope_scaling":{"type"`, `"rope_parameters":{"rope_theta":500,"rope_type"`, 1)
	a, err := model.ParseConfig([]byte(v4))
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.ParseConfig([]byte(v5))
	if err != nil {
		t.Fatal(err)
	}
	if a.Rope.Type != "yarn" || a.Rope.Theta != 500 || a.Rope.Factor != 4 {
		t.Errorf("v4 spelling read as %+v", a.Rope)
	}
	if a.SoftmaxScale() != b.SoftmaxScale() || a.RopeFrequencies()[0] != b.RopeFrequencies()[0] || a.Rope.Theta != b.Rope.Theta {
		t.Errorf("spellings differ: %+v vs %+v", a.Rope, b.Rope)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"model_type":"deepseek_v32"}`))
	f.Add([]byte(`{"rope_scaling":{"type":"yarn"},"rope_parameters":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := model.ParseConfig(data)
		if err == nil {
			_ = c.Count()
			_ = c.RopeFrequencies()
		}
	})
}
