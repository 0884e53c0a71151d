package topology

import (
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"cloonix/internal/proto"
)

// FromLab describes a running lab as a topology (what `fconf save`
// writes). Lans that no VM or tux names are kept as <LAN>, so loading
// the file recreates them.
func FromLab(lab *proto.Lab) *Topology {
	t := &Topology{ConfigPath: "."}
	used := map[string]bool{}
	for _, v := range lab.VMs {
		vm := VM{Name: v.Name, Type: strings.ToLower(v.Type), Mem: v.Mem, CPU: v.CPU, Rootfs: v.Rootfs,
			Kernel: v.Kernel, Transport: v.Transport, MgmtIP: v.MgmtIP, X: v.X, Y: v.Y}
		if v.State == "stopped" {
			vm.State = "stopped"
		}
		if filepath.IsAbs(v.Rootfs) && vm.Type != "cnt" {
			// A guest booted from an image file (a saved one): <rootfs>
			// names bulk_dir images only.
			vm.Disk, vm.Rootfs = v.Rootfs, ""
		}
		eths := append([]proto.Eth(nil), v.Eths...)
		sort.SliceStable(eths, func(i, j int) bool { return ethIndex(eths[i].Port) < ethIndex(eths[j].Port) })
		for _, e := range eths {
			lans := append([]string(nil), e.Lans...)
			sort.Strings(lans)
			for _, l := range lans {
				used[l] = true
			}
			vm.Eths = append(vm.Eths, Eth{Lans: lans, Impair: e.Impair, Link: e.Link})
		}
		t.VMs = append(t.VMs, vm)
	}
	for _, x := range lab.Tux {
		tx := Tux{Name: x.Name, Kind: x.Kind, Impair: x.Impair, Link: x.Link, X: x.X, Y: x.Y}
		tx.Lans = append([]string(nil), x.Lans...)
		sort.Strings(tx.Lans)
		for _, l := range tx.Lans {
			used[l] = true
		}
		for _, o := range x.Options {
			// Only what add_tux takes: list also shows derived values.
			if opts, _ := proto.TuxOptions(x.Kind); contains(opts, o.Name) && o.Value != "" {
				tx.Options = append(tx.Options, Option{o.Name, o.Value})
			}
		}
		sort.Slice(tx.Options, func(i, j int) bool { return tx.Options[i].Name < tx.Options[j].Name })
		for _, f := range x.Forwards {
			tx.Forwards = append(tx.Forwards, Forward{f.Proto, f.Host, f.Guest})
		}
		t.Tux = append(t.Tux, tx)
	}
	for _, l := range lab.Lans {
		if !used[l.Name] || l.X != nil || l.Y != nil {
			t.Lans = append(t.Lans, Lan{Name: l.Name, X: l.X, Y: l.Y})
		}
	}
	return t
}

// ethIndex is N of "VM:ethN" (-1 when the port is not so named).
func ethIndex(port string) int {
	i := strings.LastIndex(port, ":eth")
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(port[i+4:])
	if err != nil {
		return -1
	}
	return n
}

// EthPort is the switch's name of a VM's Nth eth.
func EthPort(vm string, n int) string { return vm + ":eth" + strconv.Itoa(n) }
