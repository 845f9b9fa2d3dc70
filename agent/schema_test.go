package agent_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
)

func TestSchema(t *testing.T) {
	const schema = `{"type":"object","properties":{
		"name":{"type":"string","minLength":1,"maxLength":5},
		"tags":{"type":"array","items":{"type":"string","enum":["a","b"]},"minItems":1,"maxItems":2},
		"n":{"type":["integer","null"],"exclusiveMinimum":0,"exclusiveMaximum":10},
		"x":{"type":"number"},
		"flag":{"type":"boolean"},
		"meta":{"type":"object","additionalProperties":{"type":"integer"}},
		"any":{"description":"anything goes","anyOf":[{"type":"string"}]}},
		"required":["name"]}`
	s, err := agent.CompileSchema(json.RawMessage(schema))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args string
		err  string // "" for valid
	}{
		{`{"name":"ab"}`, ""},
		{`{"name":"ab","tags":["a","b"],"n":3,"x":1.5,"flag":true,"meta":{"k":1},"any":[1]}`, ""},
		{`{"name":"ab","n":null}`, ""},
		{`{"name":"ééééé"}`, ""},
		{`{}`, `$: missing required property "name"`},
		{`{"name":""}`, "$.name: string of 0 characters, at least 1 required"},
		{`{"name":"abcdef"}`, "$.name: string of 6 characters, at most 5 allowed"},
		{`{"name":"a","tags":[]}`, "$.tags: 0 items, at least 1 required"},
		{`{"name":"a","tags":["a","a","a"]}`, "$.tags: 3 items, at most 2 allowed"},
		{`{"name":"a","tags":["c"]}`, `$.tags[0]: "c" is not one of ["a","b"]`},
		{`{"name":"a","n":0}`, "$.n: 0 must be greater than 0"},
		{`{"name":"a","n":10}`, "$.n: 10 must be less than 10"},
		{`{"name":"a","n":"3"}`, "$.n: expected integer or null, got string"},
		{`{"name":"a","x":"1"}`, "$.x: expected number, got string"},
		{`{"name":"a","flag":1}`, "$.flag: expected boolean, got number"},
		{`{"name":"a","meta":{"k":"v"}}`, "$.meta.k: expected integer, got string"},
	}
	for _, tc := range tests {
		args, err := agent.ParseArguments(tc.args)
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		err = s.Validate(args)
		if (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%s: got %v, want %q", tc.args, err, tc.err)
		}
	}
	for _, bad := range []string{`{"type":"strin"}`, `{"type":3}`, `{"properties":[]}`, `{"required":"a"}`,
		`{"minLength":-1}`, `{"maximum":"x"}`, `[]`, `{`} {
		if _, err := agent.CompileSchema(json.RawMessage(bad)); err == nil || !strings.HasPrefix(err.Error(), "schema") {
			t.Errorf("schema %s: err %v", bad, err)
		}
	}
	never, _ := agent.CompileSchema(json.RawMessage(`false`))
	if never.Validate(map[string]any{}) == nil {
		t.Error("schema false accepted a value")
	}
}
