package cnt

import "testing"

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b":             "/a/b",
		`/a\040b`:          "/a b",
		`/tab\011x\134y`:   "/tab\tx\\y",
		`/short\04`:        `/short\04`,
		`/not\999octal`:    `/not\999octal`,
		`/end\`:            `/end\`,
		`\040\040`:         "  ",
		`/w/k/rootfs\012z`: "/w/k/rootfs\nz",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountsUnder(t *testing.T) {
	// /proc is mounted on every Linux host the tests run on, and nothing
	// is mounted under a fresh temporary directory.
	if ms := mountsUnder("/"); len(ms) == 0 {
		t.Fatal("no mount found under /")
	}
	if ms := mountsUnder(t.TempDir()); len(ms) != 0 {
		t.Fatalf("mounts under a new directory: %v", ms)
	}
	ms := mountsUnder("/")
	for i := 1; i < len(ms); i++ {
		if len(ms[i]) > len(ms[i-1]) {
			t.Fatalf("not deepest first: %q before %q", ms[i-1], ms[i])
		}
	}
}
