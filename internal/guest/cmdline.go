package guest

import "strings"

// Cmdline is what the agent takes from the kernel command line.
type Cmdline struct {
	Name  string // cloonix.name
	Agent string // cloonix.agent: the agent serial line, e.g. /dev/ttyS1
	CD    string // cloonix.cd: the config CD block device, e.g. /dev/vdb
	Args  map[string]string
}

// Defaults when the command line does not say.
const (
	DefaultAgentDev = "/dev/ttyS1"
)

// ParseCmdline splits a kernel command line (/proc/cmdline): words
// separated by spaces, double quotes group, key=value pairs; the last
// occurrence of a key wins, as in the kernel.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{Args: map[string]string{}}
	for _, w := range splitCmdline(s) {
		k, v, _ := strings.Cut(w, "=")
		c.Args[k] = v
	}
	c.Name = c.Args["cloonix.name"]
	c.Agent = c.Args["cloonix.agent"]
	c.CD = c.Args["cloonix.cd"]
	if c.Agent == "" {
		c.Agent = DefaultAgentDev
	}
	for _, p := range []*string{&c.Agent, &c.CD} {
		if *p != "" && !strings.HasPrefix(*p, "/") {
			*p = "/dev/" + *p
		}
	}
	return c
}

func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			in = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// QEMUFastBoot are kernel parameters that shorten a Debian kernel's boot
// under TCG (measured in docs/images.md): no console chatter through the
// emulated UART, no crypto self-tests (about 0.9 s of TCG CPU). The
// machine manager appends them to QEMU guests' command lines.
const QEMUFastBoot = "quiet cryptomgr.notests "
