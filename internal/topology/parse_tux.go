package topology

import (
	"fmt"
	"strings"

	"cloonix/internal/proto"
)

// The <TUX> element. Its kinds and their options are proto.TuxKinds, the
// list the switch's kinds answer to.

// optionName is what a tux option element may be called: lower-case
// letters, digits and '_' (it becomes an attribute of add_tux).
func optionName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func optionList(kind string) string {
	opts, _ := proto.TuxOptions(kind)
	if len(opts) == 0 {
		return "none"
	}
	o := make([]string, len(opts))
	for i, k := range opts {
		o[i] = "<" + k + ">"
	}
	return strings.Join(o, ", ")
}

// reservedOptions may not be given as tux options: they are the request's own.
var reservedOptions = []string{"id", "name", "kind", "lan", "lans", "link"}

// tuxParse is one <TUX> being read.
type tuxParse struct {
	x        Tux
	ctx      string // error prefix
	seen     map[string]bool
	names    int   // <name> elements
	optLines []int // the line of each of x.Options
}

func (p *parser) tux(n *node) (Tux, bool) {
	t := &tuxParse{x: Tux{Line: n.line}, ctx: "<TUX>: ", seen: map[string]bool{}}
	nerr := len(p.errs)
	for _, k := range n.kids {
		if strings.EqualFold(k.name, "name") {
			t.x.Name = p.name("TUX", k)
			break
		}
	}
	if t.x.Name != "" {
		t.ctx = fmt.Sprintf("TUX %q: ", t.x.Name)
	}
	p.noText(t.ctx, n)
	for _, k := range n.kids {
		p.tuxKid(t, k)
	}
	p.tuxChecks(t, n)
	return t.x, len(p.errs) == nerr
}

// tuxKid reads one child element of a <TUX>.
func (p *parser) tuxKid(t *tuxParse, k *node) {
	ctx, x := t.ctx, &t.x
	switch lk := strings.ToLower(k.name); lk {
	case "name":
		if t.names++; t.names > 1 {
			p.errf(k.line, "%s<name> given twice", ctx)
		}
	case "type":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, t.seen, k) {
			s = strings.ToLower(s)
			if _, ok := proto.TuxOptions(s); !ok {
				p.errf(k.line, "%s<type> is %q; use one of %s", ctx, s, strings.Join(proto.TuxKindNames(), ", "))
			}
			x.Kind = s
		}
	case "vlan":
		s, ok := p.leaf(ctx, k)
		if !ok {
			return
		}
		if s == "" {
			p.errf(k.line, "%snames lan \"\" (empty)", ctx)
		} else if err := proto.CheckName("lan", s); err != nil {
			p.errf(k.line, "%s<vlan>: %v", ctx, err)
		} else if contains(x.Lans, s) {
			p.errf(k.line, "%snames lan %q twice", ctx, s)
		} else {
			x.Lans = append(x.Lans, s)
		}
	case "impair":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, t.seen, k) {
			x.Impair = p.impair(ctx, k, s)
		}
	case "link":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, t.seen, k) {
			x.Link = p.link(ctx, k, s) // lifecycle.go
		}
	case "forward":
		if s, ok := p.leaf(ctx, k); ok {
			f := strings.Fields(s)
			if len(f) != 3 || (f[0] != "tcp" && f[0] != "udp") {
				p.errf(k.line, "%s<forward> is %q; write <forward> tcp|udp HOSTADDR:PORT GUESTIP:PORT </forward>", ctx, s)
				return
			}
			x.Forwards = append(x.Forwards, Forward{f[0], f[1], f[2]})
		}
	case "x":
		if p.once(ctx, t.seen, k) {
			x.X = p.position(ctx, k)
		}
	case "y":
		if p.once(ctx, t.seen, k) {
			x.Y = p.position(ctx, k)
		}
	default:
		p.tuxOption(t, k, lk)
	}
}

// tuxOption reads a kind option element (<ifname>, <peer>, ...).
func (p *parser) tuxOption(t *tuxParse, k *node, lk string) {
	ctx := t.ctx
	s, ok := p.leaf(ctx, k)
	if !ok {
		return
	}
	switch {
	case !optionName(k.name) || contains(reservedOptions, lk):
		p.errf(k.line, "%s<%s>: unknown element; a TUX takes <name>, <type>, <vlan>, <impair>, <link>, <forward>, <x>, <y> and its kind's options in lower case (<ifname>, <peer>, <remote>, <vni>, ...)", ctx, k.name)
	case !p.once(ctx, t.seen, k):
	case s == "" || strings.ContainsAny(s, "\x00\r\n\t"):
		p.errf(k.line, "%s<%s> is %q; give a value on one line", ctx, k.name, s)
	default:
		t.x.Options = append(t.x.Options, Option{k.name, s})
		t.optLines = append(t.optLines, k.line)
	}
}

// tuxChecks are the checks of a <TUX> as a whole.
func (p *parser) tuxChecks(t *tuxParse, n *node) {
	ctx, x := t.ctx, &t.x
	if t.names == 0 {
		p.errf(n.line, "<TUX> has no <name>")
	}
	p.bothXY(ctx, n, x.X, x.Y)
	// Options are checked against the kind once <type> is known, wherever
	// it stands in the element.
	if opts, ok := proto.TuxOptions(x.Kind); ok {
		for i, o := range x.Options {
			if !contains(opts, o.Name) {
				p.errf(t.optLines[i], "%s<%s>: a %s tux takes no such option (it takes: %s)", ctx, o.Name, x.Kind, optionList(x.Kind))
			}
		}
	}
	if x.Kind == "" && !t.seen["type"] {
		p.errf(n.line, "%sno <type>; use one of %s", ctx, strings.Join(proto.TuxKindNames(), ", "))
	}
	if len(x.Forwards) > 0 && x.Kind != "slirp" && x.Kind != "" {
		p.errf(n.line, "%s<forward> needs <type> slirp, not %s", ctx, x.Kind)
	}
}
