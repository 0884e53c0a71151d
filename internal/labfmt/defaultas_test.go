package labfmt

import (
	"errors"
	"strings"
	"testing"
)

type fakeProbe struct {
	version string
	verErr  error
	files   map[string]string
}

func (f fakeProbe) runtimeVersion() ([]byte, error) { return []byte(f.version), f.verErr }
func (f fakeProbe) exists(p string) bool            { _, ok := f.files[p]; return ok }
func (f fakeProbe) read(p string) ([]byte, error) {
	if s, ok := f.files[p]; ok {
		return []byte(s), nil
	}
	return nil, errors.New("no " + p)
}

func TestCntUsable(t *testing.T) {
	const ver = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1\n"
	good := map[string]string{"/dev/net/tun": "", "/proc/filesystems": "nodev\tproc\nnodev\toverlay\n"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name string
		p    fakeProbe
		want string // "" for usable
	}{
		{"all there", fakeProbe{version: ver, files: good}, ""},
		{"no runc", fakeProbe{verErr: errors.New(`exec: "runc": executable file not found in $PATH`), files: good}, "apt-get install runc"},
		{"another binary", fakeProbe{version: "crun version 1.8", files: good}, "runc --version says"},
		{"no tun", fakeProbe{version: ver, files: with("/dev/net/tun", "-")}, "tun"},
		{"no overlay", fakeProbe{version: ver, files: with("/proc/filesystems", "nodev\tproc\n")}, "overlay"},
		{"overlay module", fakeProbe{version: ver, files: func() map[string]string {
			m := with("/proc/filesystems", "nodev\tproc\n")
			m["/proc/sys/kernel/osrelease"] = "6.1.0-9-amd64\n"
			m["/lib/modules/6.1.0-9-amd64/kernel/fs/overlayfs"] = ""
			return m
		}()}, ""},
	} {
		err := cntUsable(c.p)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestDefaultAsIsAType(t *testing.T) {
	as := DefaultAs()
	if (as == "cnt") != (cntUsable(hostProbe{}) == nil) || (as != "cnt" && as != "uml") {
		t.Fatalf("DefaultAs %q, host probe %v", as, cntUsable(hostProbe{}))
	}
}
