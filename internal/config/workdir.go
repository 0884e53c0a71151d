package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The work_dir holds the lab's sockets, disks, logs and pid file, and the
// switch runs as root: another local user must not be able to plant a
// symlink or a socket in it (docs/security.md). So it is the user's own,
// 0700, checked at every start, and its files are opened without
// following symlinks.

// PrepareWorkDir creates dir 0700 (and its parents 0700) or checks an
// existing one: a real directory (not a symlink), owned by this user, not
// writable by group or others. An existing one of ours is tightened to
// 0700.
func PrepareWorkDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("work_dir %s: %v", dir, err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("work_dir %s: %v", dir, err)
	}
	if err := checkPrivate(dir, fi); err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("work_dir %s: %v", dir, err)
		}
	}
	return nil
}

func checkPrivate(dir string, fi os.FileInfo) error {
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("work_dir %s is a symlink: give its real path in <work_dir>", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("work_dir %s is not a directory: remove it or change <work_dir>", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("work_dir %s belongs to uid %d, not to you (uid %d): another user may have made it; use another <work_dir>", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("work_dir %s is writable by group or others (mode %#o): files planted there could redirect the switch; remove it or use another <work_dir>", dir, fi.Mode().Perm())
	}
	return nil
}

// OpenNoFollow opens a file inside the work_dir, refusing a symlink in
// its place (O_NOFOLLOW), with mode perm whatever the umask.
func OpenNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink: refused (remove it)", path)
		}
		return nil, err
	}
	if flag&os.O_CREATE != 0 {
		_ = f.Chmod(perm)
	}
	return f, nil
}

// WriteFileNoFollow is os.WriteFile through OpenNoFollow.
func WriteFileNoFollow(path string, data []byte, perm os.FileMode) error {
	f, err := OpenNoFollow(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// LockFile is the work_dir's lock: the running switch holds an exclusive
// flock on it, so two switches never share a work_dir.
func (c *Config) LockFile() string { return filepath.Join(c.WorkDir, "switch.lock") }

// LockWorkDir takes the work_dir's lock; the returned file holds it until
// closed (or the process ends).
func (c *Config) LockWorkDir() (*os.File, error) {
	f, err := OpenNoFollow(c.LockFile(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("work_dir lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		pid := ""
		if b, err := os.ReadFile(c.PidFile()); err == nil {
			pid = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		return nil, fmt.Errorf("work_dir %s is in use by another switch%s: stop it, or give this one another <work_dir>", c.WorkDir, pid)
	}
	return f, nil
}

// ListenersDir holds one empty file per host port a lab process listens
// on ("PORT.NAME.PID"): the slirp gateway refuses guests these ports.
func (c *Config) ListenersDir() string { return filepath.Join(c.WorkDir, "listeners") }
