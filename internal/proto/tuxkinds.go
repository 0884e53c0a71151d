package proto

import "slices"

// TuxKind is a tux kind's name (add_tux's kind="...") and the options
// add_tux takes for it, in the order the command line shows them.
type TuxKind struct {
	Name    string
	Options []string
}

// TuxKinds is the one list of tux kinds and their options, shared by the
// switch's kinds (package tux, one file each, whose flags must match:
// tux's tests check it), topology files and the command line. It lives
// here, not in package tux, so clients do not link the helpers' network
// stack.
var TuxKinds = []TuxKind{
	{"slirp", []string{"subnet"}},
	{"tap", []string{"ifname"}},
	{"t2t", []string{"peer", "listen", "password"}},
	{"vxlan", []string{"remote", "vni", "port", "local", "listen-any", "peers"}},
}

// TuxKindNames are the kinds' names, in TuxKinds order.
func TuxKindNames() []string {
	n := make([]string, len(TuxKinds))
	for i, k := range TuxKinds {
		n[i] = k.Name
	}
	return n
}

// TuxOptions are the options of kind, and whether it is a kind.
func TuxOptions(kind string) ([]string, bool) {
	i := slices.IndexFunc(TuxKinds, func(k TuxKind) bool { return k.Name == kind })
	if i < 0 {
		return nil, false
	}
	return TuxKinds[i].Options, true
}
