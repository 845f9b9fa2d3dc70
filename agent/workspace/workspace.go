// Package workspace is the agent's file tool: read, write and list files in
// one directory (the episode's workspace, which the sandbox sees as /work).
//
// Every path is resolved through os.Root, so "..", absolute paths outside the
// workspace and symlinks that lead out of it are rejected, including links
// that sandboxed code plants between calls. It deliberately does not delete,
// rename, or follow links out of the workspace, and it keeps no history.
package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/dsv32/dsv32/agent"
)

// Limits of one call.
const (
	MaxRead  = 64 << 10 // bytes returned by read
	MaxWrite = 1 << 20  // bytes accepted by write
	MaxList  = 500      // entries returned by list
)

// Workspace is a directory the agent may touch.
type Workspace struct {
	root *os.Root
	dir  string
}

// Open opens dir as a workspace.
func Open(dir string) (*Workspace, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	return &Workspace{root: r, dir: dir}, nil
}

// Close releases the directory handle.
func (w *Workspace) Close() error { return w.root.Close() }

// Dir is the workspace directory on the host.
func (w *Workspace) Dir() string { return w.dir }

// rel turns a model's path into one relative to the workspace. "/work/x" is
// accepted as "x" (the sandbox's view); other absolute paths are rejected.
func rel(p string) (string, error) {
	p = strings.TrimSpace(p)
	switch {
	case p == "" || p == "/work" || p == "/work/":
		return ".", nil
	case strings.HasPrefix(p, "/work/"):
		p = strings.TrimPrefix(p, "/work/")
	case strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("path %q is outside the workspace (use a relative path or /work/...)", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q is outside the workspace", p)
	}
	return c, nil
}

// Read returns the file's text, cut at MaxRead bytes.
func (w *Workspace) Read(p string) (string, error) {
	r, err := rel(p)
	if err != nil {
		return "", err
	}
	f, err := w.root.Open(r)
	if err != nil {
		return "", clean(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", clean(err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s is a directory; use list", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxRead))
	if err != nil {
		return "", clean(err)
	}
	if fi.Size() > int64(len(b)) {
		return fmt.Sprintf("%s\n[file truncated: showing %d of %d bytes]", strings.ToValidUTF8(string(b), ""), len(b), fi.Size()), nil
	}
	return string(b), nil
}

// Write creates or replaces a file, making its parent directories.
func (w *Workspace) Write(p, content string) error {
	r, err := rel(p)
	if err != nil {
		return err
	}
	if r == "." {
		return errors.New("write needs a file path")
	}
	if len(content) > MaxWrite {
		return fmt.Errorf("content of %d bytes exceeds the %d-byte limit", len(content), MaxWrite)
	}
	if dir := path.Dir(r); dir != "." {
		if err := w.root.MkdirAll(dir, 0o755); err != nil {
			return clean(err)
		}
	}
	if fi, err := w.root.Lstat(r); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link; not writing through it", p)
	}
	return clean(w.root.WriteFile(r, []byte(content), 0o644))
}

// List lists a directory's tree, one entry per line ("dir/" for
// directories, with file sizes), up to MaxList entries.
func (w *Workspace) List(p string) (string, error) {
	r, err := rel(p)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	n := 0
	err = fs.WalkDir(w.root.FS(), r, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if q == r {
			return nil
		}
		if n++; n > MaxList {
			return fs.SkipAll
		}
		name := strings.TrimPrefix(q, r+"/")
		switch {
		case d.IsDir():
			fmt.Fprintf(&b, "%s/\n", name)
		case d.Type()&fs.ModeSymlink != 0:
			fmt.Fprintf(&b, "%s (link)\n", name)
		default:
			size := int64(0)
			if fi, err := d.Info(); err == nil {
				size = fi.Size()
			}
			fmt.Fprintf(&b, "%s (%d bytes)\n", name, size)
		}
		return nil
	})
	if err != nil {
		return "", clean(err)
	}
	if n > MaxList {
		fmt.Fprintf(&b, "[listing cut at %d entries]\n", MaxList)
	}
	if b.Len() == 0 {
		return "(empty)", nil
	}
	return strings.TrimRight(b.String(), "\n"), nil
}

// clean strips the host path from errors the model sees.
func clean(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %v", pe.Op, pe.Path, pe.Err)
	}
	return err
}

var schema = json.RawMessage(`{"type":"object","properties":{` +
	`"op":{"type":"string","enum":["read","write","list"],"description":"read a file, write (create or replace) a file, or list a directory tree"},` +
	`"path":{"type":"string","description":"relative to the workspace (/work in the sandbox)"},` +
	`"content":{"type":"string","description":"for write: the whole new file"}},` +
	`"required":["op"],"additionalProperties":false}`)

// Tool is the files tool over w.
func Tool(w *Workspace) agent.Tool {
	return agent.Func(agent.ToolSpec{Name: "files", Description: "Read, write and list files in the workspace " +
		"(the sandbox's /work).", Parameters: schema},
		func(_ context.Context, raw json.RawMessage) (string, error) {
			var a struct {
				Op, Path string
				Content  *string
			}
			if err := json.Unmarshal(raw, &a); err != nil {
				return "", err
			}
			switch a.Op {
			case "read":
				return w.Read(a.Path)
			case "write":
				if a.Content == nil {
					return "", errors.New("write needs content")
				}
				if err := w.Write(a.Path, *a.Content); err != nil {
					return "", err
				}
				return fmt.Sprintf("wrote %d bytes to %s", len(*a.Content), a.Path), nil
			default:
				return w.List(a.Path)
			}
		})
}
