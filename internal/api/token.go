package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TokenFile is the bearer token's file in work_dir.
const TokenFile = "api.token"

// LoadToken reads work_dir's token, making it (0600, 32 random bytes in
// hex) the first time. A file others may read is refused, not used.
func LoadToken(workDir string) (path, token string, err error) {
	path = filepath.Join(workDir, TokenFile)
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return path, "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return path, "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, werr := fmt.Fprintln(f, hex.EncodeToString(b))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return path, "", werr
		}
	} else if !errors.Is(err, os.ErrExist) {
		return path, "", fmt.Errorf("API token %s: %v", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return path, "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || (ok && int(st.Uid) != os.Getuid()) {
		return path, "", fmt.Errorf("API token %s must be a regular file of yours with mode 0600 (it is %v); remove it and a new one is made", path, fi.Mode())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return path, "", err
	}
	token = strings.TrimSpace(string(data))
	if len(token) < 32 {
		return path, "", fmt.Errorf("API token %s is too short; remove it and a new one is made", path)
	}
	return path, token, nil
}
