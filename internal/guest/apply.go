package guest

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ExtractTrees extracts the CD's trees.tar into root ("/" in a guest):
// modes and symlinks kept, owner root, later entries replacing earlier
// ones. Entry names are checked again here. Outside a guest (root other
// than "/", as in tests) no path is written through a symlink, so nothing
// lands outside root.
func ExtractTrees(root string, tarData []byte) error {
	tr := tar.NewReader(bytes.NewReader(tarData))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("demo files: %v", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !validRel(name) {
			return fmt.Errorf("demo file %q: bad path", h.Name)
		}
		dst := filepath.Join(root, filepath.FromSlash(name))
		if root != "/" {
			if err := noSymlinkParents(root, name); err != nil {
				return err
			}
		}
		mode := fs.FileMode(h.Mode & 0o777)
		if h.Mode&0o4000 != 0 {
			mode |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			mode |= fs.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			st, err := os.Lstat(dst)
			if err == nil && st.IsDir() {
				continue // an existing directory keeps its mode (e.g. /etc)
			}
			if err == nil {
				if err := os.Remove(dst); err != nil {
					return fmt.Errorf("demo dir /%s: %v", name, err)
				}
			}
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("demo dir /%s: %v", name, err)
			}
			if err := os.Chmod(dst, mode); err != nil {
				return fmt.Errorf("demo dir /%s: %v", name, err)
			}
		case tar.TypeSymlink:
			if err := prepare(dst); err != nil {
				return fmt.Errorf("demo link /%s: %v", name, err)
			}
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return fmt.Errorf("demo link /%s: %v", name, err)
			}
			_ = os.Lchown(dst, 0, 0)
		case tar.TypeReg:
			if err := prepare(dst); err != nil {
				return fmt.Errorf("demo file /%s: %v", name, err)
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("demo file /%s: %v", name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				_ = os.Chown(dst, 0, 0)
				err = os.Chmod(dst, mode) // after chown, which clears setuid
			}
			if err != nil {
				return fmt.Errorf("demo file /%s: %v", name, err)
			}
			_ = os.Chtimes(dst, h.ModTime, h.ModTime)
		default:
			return fmt.Errorf("demo file /%s: unsupported type %q", name, h.Typeflag)
		}
	}
}

// prepare makes dst's parent and removes what is at dst (not a directory
// holding files).
func prepare(dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	st, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		return os.Remove(dst) // fails, rightly, if not empty
	}
	return os.Remove(dst)
}

// noSymlinkParents refuses a name whose existing parents include a
// symlink under root.
func noSymlinkParents(root, name string) error {
	parts := strings.Split(name, "/")
	p := root
	for _, c := range parts[:len(parts)-1] {
		p = filepath.Join(p, c)
		st, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("demo file %q: would be written through the symlink %s", name, p)
		}
	}
	return nil
}

// WriteAuthorizedKey adds key to root/root/.ssh/authorized_keys once.
func WriteAuthorizedKey(root, key string) error {
	key = strings.TrimSpace(key)
	if key == "" {
		return nil
	}
	dir := filepath.Join(root, "root", ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_ = os.Chmod(dir, 0o700)
	p := filepath.Join(dir, "authorized_keys")
	old, _ := os.ReadFile(p)
	for _, l := range strings.Split(string(old), "\n") {
		if strings.TrimSpace(l) == key {
			return nil
		}
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	return os.WriteFile(p, append(old, key+"\n"...), 0o600)
}

// RunDeleteCmds runs the demo's delete commands with /bin/sh. Only ever
// called inside a guest.
func RunDeleteCmds(cmds string, out io.Writer) error {
	if strings.TrimSpace(cmds) == "" {
		return nil
	}
	cmd := exec.Command("/bin/sh", "-c", cmds)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("files_to_delete_from_all_targets: %v", err)
	}
	return nil
}

// RCScripts lists dir's S* entries in order (what runs at boot).
func RCScripts(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "S") && !strings.HasSuffix(e.Name(), "~") {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// RunRC runs each script with "start", executable or not (sh runs the
// latter), waiting for each but at most perScript.
func RunRC(scripts []string, out io.Writer, perScript time.Duration) {
	for _, s := range scripts {
		st, err := os.Stat(s)
		if err != nil || st.IsDir() {
			continue
		}
		var cmd *exec.Cmd
		if st.Mode()&0o111 != 0 {
			cmd = exec.Command(s, "start")
		} else {
			cmd = exec.Command("/bin/sh", s, "start")
		}
		cmd.Dir = "/"
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 200 * time.Millisecond // daemons started in the background keep the output open
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(out, "cloonix-agent: %s: %v\n", s, err)
			continue
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
				fmt.Fprintf(out, "cloonix-agent: %s: %v\n", s, err)
			}
		case <-time.After(perScript):
			fmt.Fprintf(out, "cloonix-agent: %s still running after %v, going on\n", s, perScript)
		}
	}
}
