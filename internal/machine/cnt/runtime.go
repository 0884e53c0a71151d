package cnt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultRuntime is the OCI runtime used when the config names none.
// crun 1.8 refuses this kind of host's hybrid cgroups; runc 1.1 works.
const DefaultRuntime = "runc"

// Runtime runs OCI bundles with runc or a compatible runtime (crun,
// youki: same command line), its state kept under Root.
type Runtime struct {
	Path string // the runtime binary
	Root string // its state directory (--root), one per lab
}

// FindRuntime checks the runtime binary: name or path ("" is runc).
func FindRuntime(name string) (string, error) {
	if name == "" {
		name = DefaultRuntime
	}
	p, err := exec.LookPath(name)
	if err != nil {
		pkg := filepath.Base(name)
		return "", fmt.Errorf("OCI runtime %s not found: container nodes need it (Debian: apt-get install %s; or name another in <oci_runtime>)", name, pkg)
	}
	return p, nil
}

// command builds `runtime --root R [--log L] args...`.
func (r *Runtime) command(ctx context.Context, log string, args ...string) *exec.Cmd {
	a := []string{"--root", r.Root}
	if log != "" {
		a = append(a, "--log", log)
	}
	return exec.CommandContext(ctx, r.Path, append(a, args...)...)
}

// run runs a short runtime command; its error carries the runtime's
// stderr.
func (r *Runtime) run(ctx context.Context, args ...string) error {
	cmd := r.command(ctx, "", args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return runtimeError(r.Path, args[0], err, errb.Bytes())
	}
	return nil
}

// gone tells whether the runtime keeps no state for container id
// (runc's layout: ROOT/ID).
func (r *Runtime) gone(id string) bool {
	_, err := os.Stat(filepath.Join(r.Root, id))
	return os.IsNotExist(err)
}

// runtimeError names the runtime, the verb and its own words.
func runtimeError(path, verb string, err error, stderr []byte) error {
	msg := strings.TrimSpace(tail(stderr, 4))
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%s %s: %s", filepath.Base(path), verb, msg)
}

// logTail returns the last lines of a runtime log file (--log), where
// runc writes why create failed.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// text format: time="..." level=error msg="..."
		if i := strings.Index(l, "msg="); i >= 0 {
			l = strings.Trim(l[i+4:], "\"")
		}
		if l != "" {
			msgs = append(msgs, l)
		}
	}
	if len(msgs) > 3 {
		msgs = msgs[len(msgs)-3:]
	}
	return strings.Join(msgs, "; ")
}
