package sandbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsv32/dsv32/agent"
)

// newSandbox skips only when bwrap is absent; a bwrap that is present but
// cannot start a sandbox fails the test.
func newSandbox(t *testing.T, cfg Config) *Sandbox {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap not installed (apt-get install -y bubblewrap); skipping sandbox tests")
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
			t.Errorf("work directory %s survives Close", s.Dir())
		}
	})
	return s
}

func run(t *testing.T, s *Sandbox, argv ...string) Result {
	t.Helper()
	res, err := s.Run(context.Background(), argv)
	if err != nil {
		t.Fatalf("Run(%q): %v", argv, err)
	}
	return res
}

// assertNothingLeft checks that no process of the sandbox's uid survives.
func assertNothingLeft(t *testing.T, s *Sandbox) {
	t.Helper()
	if !s.root {
		return // our own uid: nothing to tell sandboxed processes apart by
	}
	if pids := Processes(s.uid); len(pids) > 0 {
		t.Errorf("processes of sandbox uid %d still running: %v", s.uid, pids)
	}
}

func TestRunBasics(t *testing.T) {
	s := newSandbox(t, Config{})
	tests := []struct {
		name       string
		argv       []string
		exit       int
		stdout     string
		stderrPart string
	}{
		{"python", []string{"python3", "-c", "print(6*7)"}, 0, "42\n", ""},
		{"exit code", []string{"python3", "-c", "import sys; sys.exit(3)"}, 3, "", ""},
		{"stderr", []string{"python3", "-c", "1/0"}, 1, "", "ZeroDivisionError"},
		{"bash cwd", []string{"bash", "-c", "pwd; echo $HOME"}, 0, "/work\n/work\n", ""},
		{"write work", []string{"bash", "-c", "echo hi > /work/out.txt && cat out.txt"}, 0, "hi\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, s, tc.argv...)
			if res.ExitCode != tc.exit || res.Stdout != tc.stdout || !strings.Contains(res.Stderr, tc.stderrPart) {
				t.Errorf("got exit %d stdout %q stderr %q; want %d %q ~%q", res.ExitCode, res.Stdout, res.Stderr,
					tc.exit, tc.stdout, tc.stderrPart)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(s.Dir(), "out.txt")); err != nil || string(b) != "hi\n" {
		t.Errorf("host sees work file %q, %v", b, err)
	}
	assertNothingLeft(t, s)
}

// TestNoNetwork: the sandbox has its own network namespace with only a down
// loopback: the host's loopback TCP, abstract unix sockets and the outside
// are all unreachable.
func TestNoNetwork(t *testing.T) {
	s := newSandbox(t, Config{Timeout: 20 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host secret\n"))
			c.Close()
		}
	}()
	abstract := fmt.Sprintf("@dsv32-sandbox-test-%d", os.Getpid())
	uln, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// Reachability is checked from the host first, so the probes are real.
	if c, err := net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatalf("host cannot reach its own listener: %v", err)
	} else {
		c.Close()
	}
	prog := fmt.Sprintf(`
import socket
def probe(name, fn):
    try:
        fn()
        print(name, "REACHED")
    except Exception as e:
        print(name, "blocked:", type(e).__name__)
def tcp(host, port):
    s = socket.create_connection((host, port), timeout=2); s.recv(100)
def unix():
    s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect("\0" + %q)
probe("host-loopback", lambda: tcp("127.0.0.1", %d))
probe("outside-ip", lambda: tcp("1.1.1.1", 53))
probe("dns", lambda: socket.getaddrinfo("example.com", 80))
probe("abstract-unix", unix)
print("interfaces", sorted(n for _, n in socket.if_nameindex()))
`, strings.TrimPrefix(abstract, "@"), port)
	res := run(t, s, "python3", "-c", prog)
	t.Logf("probes:\n%s%s", res.Stdout, res.Stderr)
	if res.ExitCode != 0 || strings.Contains(res.Stdout, "REACHED") || strings.Count(res.Stdout, "blocked") != 4 {
		t.Errorf("network reachable from the sandbox:\n%s%s", res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "interfaces ['lo']") {
		t.Errorf("sandbox sees network interfaces: %s", res.Stdout)
	}
	assertNothingLeft(t, s)
}

// TestConfinedWrites: only /work (and the private /tmp) are writable.
func TestConfinedWrites(t *testing.T) {
	s := newSandbox(t, Config{})
	hostDir := t.TempDir()
	marker := fmt.Sprintf("dsv32-escape-%d", time.Now().UnixNano())
	targets := []string{"/usr/" + marker, "/etc/" + marker, "/" + marker, "/work/../" + marker,
		hostDir + "/" + marker, "/proc/sys/kernel/hostname", "/dev/" + marker}
	prog := "import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x')\n        print(p, 'WROTE')\n" +
		"    except Exception as e:\n        print(p, 'denied:', type(e).__name__)\n"
	res := run(t, s, append([]string{"python3", "-c", prog}, targets...)...)
	t.Logf("writes:\n%s%s", res.Stdout, res.Stderr)
	if strings.Contains(res.Stdout, "WROTE") || strings.Count(res.Stdout, "denied") != len(targets) {
		t.Errorf("sandbox wrote outside /work:\n%s%s", res.Stdout, res.Stderr)
	}
	// /tmp inside is writable but private: nothing reaches the host's /tmp.
	res = run(t, s, "bash", "-c", "echo x > /tmp/"+marker+" && echo ok")
	if res.Stdout != "ok\n" {
		t.Errorf("private /tmp not writable: %+v", res)
	}
	// Links planted for the next run's chown of /work do not redirect it.
	hostFile := filepath.Join(hostDir, "owned-by-root")
	os.WriteFile(hostFile, []byte("x"), 0o600)
	run(t, s, "bash", "-c", "ln -s "+hostFile+" link; ln -s "+hostDir+" dirlink; mkdir -p d && ln -s "+hostDir+" d/l")
	run(t, s, "true")
	if s.root {
		for _, p := range []string{hostFile, hostDir} {
			if fi, err := os.Stat(p); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf("%s was chowned through a link", p)
			}
		}
	}
	for _, p := range []string{"/tmp/" + marker, "/usr/" + marker, "/" + marker, filepath.Join(hostDir, marker)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s appeared on the host", p)
		}
	}
	assertNothingLeft(t, s)
}

// TestNoHostSecrets: the host's home, the project, /etc secrets and the
// host's environment are invisible.
func TestNoHostSecrets(t *testing.T) {
	s := newSandbox(t, Config{})
	t.Setenv("DSV32_SANDBOX_SECRET", "hunter2")
	project, _ := os.Getwd()
	home, _ := os.UserHomeDir()
	paths := []string{"/root", project, filepath.Join(project, "sandbox.go"), "/etc/shadow", "/etc/passwd", "/home",
		"/sys/class", "/proc/1/environ"}
	if home != "" {
		paths = append(paths, home)
	}
	prog := "import os, sys\nfor p in sys.argv[1:]:\n    try:\n        if os.path.isdir(p): os.listdir(p)\n" +
		"        else: open(p).read()\n        print(p, 'READ')\n    except Exception as e:\n" +
		"        print(p, 'hidden:', type(e).__name__)\nprint('secret' if 'DSV32_SANDBOX_SECRET' in os.environ else 'env clean')\n"
	res := run(t, s, append([]string{"python3", "-c", prog}, paths...)...)
	t.Logf("reads:\n%s%s", res.Stdout, res.Stderr)
	// /proc/1/environ is the sandbox's own init (bwrap), which has no secret.
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if strings.HasSuffix(line, "READ") && !strings.HasPrefix(line, "/proc/1/environ") {
			t.Errorf("host path readable: %s", line)
		}
	}
	if !strings.Contains(res.Stdout, "env clean") {
		t.Error("host environment leaked into the sandbox")
	}
	res = run(t, s, "bash", "-c", "cat /proc/1/environ | tr '\\0' '\\n'; ps -e 2>/dev/null | wc -l; ls /proc | grep -c '^[0-9]'")
	if strings.Contains(res.Stdout, "hunter2") {
		t.Error("secret visible through /proc/1/environ")
	}
	assertNothingLeft(t, s)
}

// TestLimits: each hostile program is stopped at a limit, promptly, and
// leaves nothing running.
func TestLimits(t *testing.T) {
	// The CPU limit (1 s) is far below the wall clock (20 s), so the CPU
	// loop is stopped by its rlimit even on a loaded 2-core machine.
	s := newSandbox(t, Config{CPUSeconds: 1, MemoryBytes: 256 << 20, Processes: 32, FileBytes: 1 << 20,
		OutputBytes: 16 << 10, Timeout: 20 * time.Second})
	tests := []struct {
		name  string
		argv  []string
		check func(Result) bool
	}{
		{"python fork bomb", []string{"python3", "-c", "import os\nn=0\nfor i in range(10000):\n    try:\n        if os.fork() == 0:\n            import time; time.sleep(60)\n        n+=1\n    except OSError: break\nprint(n)"},
			func(r Result) bool { return r.ExitCode == 0 && r.Stdout != "" && atoi(r.Stdout) < 32 }},
		{"bash fork bomb", []string{"bash", "-c", "f(){ f|f& }; f; sleep 3; echo survived"},
			func(r Result) bool { return r.Stdout == "survived\n" && strings.Contains(r.Stderr, "fork") }},
		{"memory hog", []string{"python3", "-c", "l=[]\nwhile True: l.append(bytearray(16<<20))"},
			func(r Result) bool { return strings.Contains(r.Stderr, "MemoryError") || r.ExitCode == 137 }},
		{"cpu loop", []string{"python3", "-c", "while True: pass"},
			func(r Result) bool { return !r.TimedOut && (r.ExitCode == 137 || r.ExitCode == 152) }},

		{"huge output", []string{"python3", "-c", "while True: print('x'*1000)"},
			func(r Result) bool { return r.OutputCapped && len(r.Stdout) < 20<<10 }},
		{"huge file", []string{"python3", "-c", "open('/work/big','wb').write(b'0'*(8<<20))"},
			func(r Result) bool { return r.ExitCode == 153 || r.ExitCode == 1 }},
		{"daemon", []string{"bash", "-c", "(setsid sleep 300 &); nohup sleep 300 >/dev/null 2>&1 & disown; echo started"},
			func(r Result) bool { return r.ExitCode == 0 && r.Stdout == "started\n" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res := run(t, s, tc.argv...)
			t.Logf("%s: exit %d killed %q in %v; stderr %.200q", tc.name, res.ExitCode, res.Killed, time.Since(start),
				res.Stderr)
			if !tc.check(res) {
				t.Errorf("not stopped at its limit: %+v", res)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %v, past the 20 s timeout by far", d)
			}
			assertNothingLeft(t, s)
		})
	}
	if fi, err := os.Stat(filepath.Join(s.Dir(), "big")); err == nil && fi.Size() > 1<<20 {
		t.Errorf("file size limit not applied: %d bytes", fi.Size())
	}
}

// TestTimeout: a program that neither computes nor prints is stopped by the
// wall clock.
func TestTimeout(t *testing.T) {
	s := newSandbox(t, Config{Timeout: 2 * time.Second})
	start := time.Now()
	res := run(t, s, "bash", "-c", "sleep 100 & python3 -c 'import time; time.sleep(100)'")
	if !res.TimedOut || time.Since(start) > 10*time.Second {
		t.Errorf("sleeper not killed at the 2 s timeout: %+v after %v", res, time.Since(start))
	}
	assertNothingLeft(t, s)
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func TestTools(t *testing.T) {
	s := newSandbox(t, Config{})
	box, err := agent.NewToolbox(Python(s), Bash(s))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		call  agent.ToolCall
		want  string
		isErr bool
	}{
		{agent.ToolCall{Name: "python", Arguments: `{"code":"print(sum(range(10)))"}`}, "exit code: 0\nstdout:\n45", false},
		{agent.ToolCall{Name: "bash", Arguments: `{"code":"echo hi >&2; exit 2"}`}, "exit code: 2\nstderr:\nhi", false},
		{agent.ToolCall{Name: "python", Arguments: `{"code":`}, "error: malformed arguments for python", true},
		{agent.ToolCall{Name: "python", Arguments: `{"script":"x"}`}, `error: invalid arguments for python: $: missing required property "code"`, true},
	}
	for _, tc := range tests {
		got, isErr := box.Call(context.Background(), tc.call)
		if isErr != tc.isErr || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s(%s) = %q, %v; want prefix %q, %v", tc.call.Name, tc.call.Arguments, got, isErr, tc.want, tc.isErr)
		}
	}
}
