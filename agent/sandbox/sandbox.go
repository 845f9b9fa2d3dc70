// Package sandbox runs untrusted code (model-written Python and shell) under
// bubblewrap, and offers it to the agent as the python and bash tools.
//
// Each Sandbox owns a throw-away work directory, bound read-write at /work; the
// system (/usr and the /bin, /lib links) is bound read-only; /tmp is a small
// private tmpfs; /proc and /dev are the sandbox's own. All namespaces are
// unshared (no network: not even the host's loopback), further user
// namespaces are disabled, the environment is explicit, and the sandbox dies
// with its parent. rlimits cap CPU seconds, address space, processes, file
// size and open files (set hard and soft by bash's ulimit inside the sandbox,
// which then execs the program); a wall-clock timeout and an output cap kill
// the whole process group, and so the sandbox's pid namespace.
//
// Running as root, the sandbox drops to an unprivileged uid of its own before
// starting bwrap (so bwrap takes the unprivileged user-namespace path, keeps
// no capabilities, and RLIMIT_NPROC, which the kernel never enforces for uid
// 0, applies); that uid also lets Close find and kill anything left over.
//
// What it deliberately does not do (agent.md §7): no cgroup, so memory and CPU
// are capped per process, not per tree; no seccomp filter (a kernel bug is an
// escape); no network, so no package installs; no container images; no state
// between calls other than files in the work directory.
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config sets a sandbox's limits. Zero fields take the defaults shown.
type Config struct {
	Bwrap       string        // bwrap binary; "": looked up in PATH
	Parent      string        // where the work directory is made; "": os.TempDir()
	CPUSeconds  int           // RLIMIT_CPU per process; 10
	MemoryBytes int64         // RLIMIT_AS per process; 1 GiB
	Processes   int           // RLIMIT_NPROC for the sandbox's uid; 64
	FileBytes   int64         // RLIMIT_FSIZE; 16 MiB
	OpenFiles   int           // RLIMIT_NOFILE; 256
	TmpBytes    int64         // size of the /tmp tmpfs; 64 MiB
	OutputBytes int           // kept per stream (stdout, stderr); exceeding it kills the run; 64 KiB
	Timeout     time.Duration // wall clock per run; 30 s
	ReadOnly    []string      // extra host paths bound read-only at the same place
}

func (c *Config) defaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def64 := func(p *int64, v int64) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&c.CPUSeconds, 10)
	def64(&c.MemoryBytes, 1<<30)
	def(&c.Processes, 64)
	def64(&c.FileBytes, 16<<20)
	def(&c.OpenFiles, 256)
	def64(&c.TmpBytes, 64<<20)
	def(&c.OutputBytes, 64<<10)
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
}

// Sandbox is one episode's sandbox: a work directory and the limits its runs
// get. Runs may be concurrent; they share the directory and the process cap.
type Sandbox struct {
	cfg   Config
	bwrap string
	dir   string
	root  bool       // we are uid 0 and drop to uid below
	uid   uint32     // the sandbox's uid on the host (root mode)
	mu    sync.Mutex // one run at a time, so leftovers can be killed by uid
}

var uidSeq atomic.Uint32

// uidBase starts the range of host uids the sandbox uses when run as root,
// far above any real account.
const uidBase = 1_500_000_000

// New checks for bwrap and makes the work directory.
func New(cfg Config) (*Sandbox, error) {
	cfg.defaults()
	bw := cfg.Bwrap
	if bw == "" {
		bw = "bwrap"
	}
	path, err := exec.LookPath(bw)
	if err != nil {
		return nil, fmt.Errorf("sandbox: bubblewrap not found (install the Debian package bubblewrap): %w", err)
	}
	dir, err := os.MkdirTemp(cfg.Parent, "dsv32-sandbox-")
	if err != nil {
		return nil, fmt.Errorf("sandbox: work directory: %w", err)
	}
	s := &Sandbox{cfg: cfg, bwrap: path, dir: dir, root: os.Geteuid() == 0}
	if s.root {
		s.uid = uidBase + uint32(os.Getpid()%100_000)*1000 + uidSeq.Add(1)%1000
		if err := os.Chown(dir, int(s.uid), int(s.uid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("sandbox: chown work directory: %w", err)
		}
	}
	return s, nil
}

// Dir is the work directory on the host (/work inside).
func (s *Sandbox) Dir() string { return s.dir }

// UID is the host uid sandboxed processes run as (the caller's own uid
// unless running as root).
func (s *Sandbox) UID() int {
	if s.root {
		return int(s.uid)
	}
	return os.Getuid()
}

// Close kills anything left running and removes the work directory.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root {
		s.killLeftovers()
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("sandbox: remove work directory: %w", err)
	}
	return nil
}

// Result is what one run produced.
type Result struct {
	Stdout, Stderr string
	ExitCode       int    // 128+n when killed by signal n
	TimedOut       bool   // the wall-clock timeout or the caller's context ended it
	OutputCapped   bool   // the output cap ended it
	Killed         string // why the run was killed, if it was
	Elapsed        time.Duration
}

// String renders r for the model.
func (r Result) String() string {
	var b strings.Builder
	switch {
	case r.Killed != "":
		fmt.Fprintf(&b, "killed: %s\n", r.Killed)
	case r.ExitCode > 128:
		sig := syscall.Signal(r.ExitCode - 128)
		fmt.Fprintf(&b, "killed by signal %d (%v)", r.ExitCode-128, sig)
		if sig == syscall.SIGKILL || sig == syscall.SIGXCPU {
			b.WriteString(": a CPU-time or memory limit, probably")
		}
		b.WriteString("\n")
	default:
		fmt.Fprintf(&b, "exit code: %d\n", r.ExitCode)
	}
	if r.Stdout != "" {
		b.WriteString("stdout:\n" + r.Stdout)
		if !strings.HasSuffix(r.Stdout, "\n") {
			b.WriteString("\n")
		}
	}
	if r.Stderr != "" {
		b.WriteString("stderr:\n" + r.Stderr)
	}
	return strings.TrimRight(b.String(), "\n")
}

// args builds the bwrap command line around argv.
func (s *Sandbox) args(argv []string) []string {
	c := s.cfg
	a := []string{
		"--unshare-all", "--unshare-user", "--disable-userns",
		"--die-with-parent", "--new-session", "--hostname", "sandbox",
		"--ro-bind", "/usr", "/usr",
	}
	// Merged-/usr systems have /bin, /lib… as links into /usr; older ones
	// have directories.
	for _, p := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
		case fi.Mode()&fs.ModeSymlink != 0:
			if target, err := os.Readlink(p); err == nil {
				a = append(a, "--symlink", target, p)
			}
		case fi.IsDir():
			a = append(a, "--ro-bind", p, p)
		}
	}
	for _, p := range []string{"/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
		"/etc/ld.so.conf.d", "/etc/localtime"} {
		a = append(a, "--ro-bind-try", p, p)
	}
	for _, p := range c.ReadOnly {
		a = append(a, "--ro-bind", p, p)
	}
	a = append(a,
		"--proc", "/proc", "--dev", "/dev",
		"--size", strconv.FormatInt(c.TmpBytes, 10), "--tmpfs", "/tmp",
		"--bind", s.dir, "/work", "--chdir", "/work",
		"--remount-ro", "/dev", "--remount-ro", "/",
		"--clearenv",
		"--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
		"--setenv", "HOME", "/work", "--setenv", "TMPDIR", "/tmp",
		"--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
		"--setenv", "PYTHONUNBUFFERED", "1",
	)
	nproc := c.Processes
	if !s.root {
		// RLIMIT_NPROC counts every process of the real uid: leave room for
		// the caller's own.
		nproc += countProcesses(uint32(os.Getuid()))
	}
	limits := fmt.Sprintf("ulimit -c 0 -t %d -v %d -u %d -f %d -n %d || exit 125; exec \"$@\"",
		c.CPUSeconds, c.MemoryBytes/1024, nproc, c.FileBytes/1024, c.OpenFiles)
	a = append(a, "--", "/bin/bash", "-c", limits, "sandbox")
	return append(a, argv...)
}

// Run runs argv (resolved inside the sandbox) in /work and waits for it,
// the timeout, the output cap or ctx, whichever comes first. An error means
// the sandbox itself failed; what the code did is in Result. Runs of one
// Sandbox are serialised.
func (s *Sandbox) Run(ctx context.Context, argv []string) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("sandbox: empty command")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root {
		// Files the agent wrote as root must be writable inside.
		if err := chownTree(s.dir, int(s.uid)); err != nil {
			return Result{}, fmt.Errorf("sandbox: %w", err)
		}
	}
	cmd := exec.Command(s.bwrap, s.args(argv)...)
	cmd.Dir = s.dir
	cmd.Env = []string{} // bwrap --clearenv sets the inside; bwrap itself needs nothing
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.root {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: s.uid, Gid: s.uid, Groups: []uint32{}}
	}
	capped := make(chan struct{})
	var once sync.Once
	over := func() { once.Do(func() { close(capped) }) }
	stdout := &capWriter{max: s.cfg.OutputBytes, over: over}
	stderr := &capWriter{max: s.cfg.OutputBytes, over: over}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second

	start := time.Now()
	runtime.LockOSThread() // Pdeathsig follows the thread that forked
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: start bwrap: %w", err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	timer := time.NewTimer(s.cfg.Timeout)
	defer timer.Stop()
	var res Result
	kill := func(why string) {
		res.Killed = why
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	var werr error
	select {
	case werr = <-done:
	case <-timer.C:
		res.TimedOut = true
		kill(fmt.Sprintf("wall-clock timeout after %v", s.cfg.Timeout))
		werr = <-done
	case <-ctx.Done():
		res.TimedOut = true
		kill(fmt.Sprintf("cancelled: %v", ctx.Err()))
		werr = <-done
	case <-capped:
		res.OutputCapped = true
		kill(fmt.Sprintf("output exceeded %d bytes", s.cfg.OutputBytes))
		werr = <-done
	}
	res.Elapsed = time.Since(start)
	if s.root {
		s.killLeftovers()
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var ee *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &ee):
		res.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = 128 + int(ws.Signal())
		}
	case errors.Is(werr, exec.ErrWaitDelay):
	default:
		return res, fmt.Errorf("sandbox: wait: %w", werr)
	}
	if res.Killed == "" && res.ExitCode == 1 && strings.HasPrefix(res.Stderr, "bwrap:") {
		return res, fmt.Errorf("sandbox: bwrap failed: %s", strings.TrimSpace(res.Stderr))
	}
	if res.Killed == "" && res.ExitCode == 125 && strings.Contains(res.Stderr, "ulimit") {
		return res, fmt.Errorf("sandbox: setting limits failed: %s", strings.TrimSpace(res.Stderr))
	}
	slog.Debug("sandbox run", "argv0", argv[0], "exit", res.ExitCode, "killed", res.Killed, "elapsed", res.Elapsed)
	return res, nil
}

// capWriter keeps the first max bytes and reports when more arrive.
type capWriter struct {
	mu    sync.Mutex
	max   int
	buf   bytes.Buffer
	total int
	over  func()
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	w.total += len(p)
	if w.total > w.max {
		w.over()
	}
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.ToValidUTF8(w.buf.String(), "\uFFFD")
	if w.total > w.max {
		s += fmt.Sprintf("\n[output truncated: %d bytes in all]", w.total)
	}
	return s
}

// chownTree gives the work directory to the sandbox's uid. It goes through
// os.Root, so a link planted by sandboxed code cannot redirect it outside.
func chownTree(dir string, uid int) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := root.Lchown(p, uid, uid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		return nil
	})
}

// Processes lists the live (not zombie) pids whose real uid is uid.
func Processes(uid uint32) []int {
	ents, _ := os.ReadDir("/proc")
	want := strconv.FormatUint(uint64(uid), 10)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		live, mine := true, false
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "State:":
				live = f[1] != "Z" && f[1] != "X"
			case "Uid:":
				mine = f[1] == want
			}
		}
		if live && mine {
			pids = append(pids, pid)
		}
	}
	return pids
}

func countProcesses(uid uint32) int { return len(Processes(uid)) }

// killLeftovers kills every process of the sandbox's uid until none is left.
func (s *Sandbox) killLeftovers() {
	for range 500 { // a dying pid namespace can take a while on a loaded machine
		pids := Processes(s.uid)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	slog.Warn("sandbox: processes survive SIGKILL", "uid", s.uid)
}
