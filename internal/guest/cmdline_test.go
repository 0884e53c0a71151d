package guest

import "testing"

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in               string
		name, agent, cd  string
		extraKey, extraV string
	}{
		{"console=ttyS0 cloonix.name=A cloonix.agent=/dev/ttyS1 cloonix.cd=/dev/vdb net.ifnames=0\n", "A", "/dev/ttyS1", "/dev/vdb", "net.ifnames", "0"},
		{"ubd0=x.cow,busybox.img root=/dev/ubda cloonix.cd=ubdb cloonix.name=uml1", "uml1", "/dev/ttyS1", "/dev/ubdb", "root", "/dev/ubda"},
		{`foo="a b c" cloonix.name=B cloonix.name=C quiet`, "C", "/dev/ttyS1", "", "foo", "a b c"},
		{"", "", "/dev/ttyS1", "", "quiet", ""},
	}
	for _, tc := range tests {
		c := ParseCmdline(tc.in)
		if c.Name != tc.name || c.Agent != tc.agent || c.CD != tc.cd || c.Args[tc.extraKey] != tc.extraV {
			t.Errorf("%q: got %+v", tc.in, c)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add(`a="b c" cloonix.name=x`)
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseCmdline(s)
		if c.Agent == "" {
			t.Fatal("no agent device")
		}
	})
}
