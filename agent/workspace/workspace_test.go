package workspace

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
)

func TestFilesTool(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("hunter2"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "escape"))                   // a directory link out
	os.Symlink("/etc/hostname", filepath.Join(dir, "host"))             // a file link out
	os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "abs-in")) // absolute, but inside
	ws, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	box, err := agent.NewToolbox(Tool(ws))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args  string
		want  string // prefix
		isErr bool
	}{
		{`{"op":"write","path":"sub/a.txt","content":"hello"}`, "wrote 5 bytes to sub/a.txt", false},
		{`{"op":"read","path":"sub/a.txt"}`, "hello", false},
		{`{"op":"read","path":"/work/sub/a.txt"}`, "hello", false},
		{`{"op":"read","path":"sub/../sub/./a.txt"}`, "hello", false},
		{`{"op":"read","path":"abs-in/a.txt"}`, "", true}, // absolute links are not followed by os.Root
		{`{"op":"list","path":""}`, "abs-in (link)\nescape (link)\nhost (link)\nsub/\nsub/a.txt (5 bytes)", false},
		{`{"op":"list"}`, "abs-in (link)", false},
		{`{"op":"read","path":"../` + filepath.Base(outside) + `/secret"}`, "error: path", true},
		{`{"op":"read","path":"` + filepath.Join(outside, "secret") + `"}`, "error: path", true},
		{`{"op":"read","path":"/etc/passwd"}`, "error: path \"/etc/passwd\" is outside the workspace", true},
		{`{"op":"read","path":"escape/secret"}`, "error: openat escape/secret: path escapes from parent", true},
		{`{"op":"read","path":"host"}`, "error: openat host: path escapes from parent", true},
		{`{"op":"write","path":"escape/new","content":"x"}`, "error:", true},
		{`{"op":"write","path":"host","content":"x"}`, "error: host is a symbolic link", true},
		{`{"op":"list","path":"escape"}`, "error:", true},
		{`{"op":"read","path":"sub"}`, "error: sub is a directory", true},
		{`{"op":"read","path":"missing"}`, "error: openat missing: no such file or directory", true},
		{`{"op":"write","path":"x"}`, "error: write needs content", true},
		{`{"op":"write","path":"","content":"x"}`, "error: write needs a file path", true},
		{`{"op":"delete","path":"x"}`, "error: invalid arguments for files: $.op", true},
	}
	for _, tc := range tests {
		got, isErr := box.Call(context.Background(), agent.ToolCall{Name: "files", Arguments: tc.args})
		if isErr != tc.isErr || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s = %q, %v; want prefix %q, %v", tc.args, got, isErr, tc.want, tc.isErr)
		}
		if strings.Contains(got, "hunter2") {
			t.Errorf("%s leaked %q", tc.args, got)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Error("a write escaped through a link")
	}
	big := strings.Repeat("x", MaxRead+10)
	if err := ws.Write("big", big); err != nil {
		t.Fatal(err)
	}
	if got, _ := ws.Read("big"); !strings.HasSuffix(got, "[file truncated: showing 65536 of 65546 bytes]") {
		t.Errorf("big read not truncated: ...%q", got[len(got)-40:])
	}
}
