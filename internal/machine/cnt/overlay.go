package cnt

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOverlay mounts lower (never written) under upper at merged: the
// node's copy-on-write root.
func mountOverlay(lower, upper, work, merged string) error {
	for _, p := range []string{lower, upper, work} {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("overlay: path %q holds ',' or ':', which overlayfs options cannot carry", p)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		if errors.Is(err, unix.EPERM) {
			return errors.New("mounting the node's overlay needs root (CAP_SYS_ADMIN)")
		}
		return fmt.Errorf("mounting overlay %s over %s: %v", upper, lower, err)
	}
	return nil
}

// unmount removes the mount at p, lazily if it is busy.
func unmount(p string) {
	if err := unix.Unmount(p, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		_ = unix.Unmount(p, unix.MNT_DETACH)
	}
}
