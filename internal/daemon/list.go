package daemon

import (
	"encoding/xml"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
)

// listVerb answers `list` with the whole lab; each feature fills its part.
func listVerb(d *Daemon, c *client, m *proto.Msg) ([]byte, error) {
	return xml.Marshal(d.Lab())
}

func counters(c fabric.Counters) proto.Counters {
	return proto.Counters{RxFrames: c.RxFrames, RxBytes: c.RxBytes, TxFrames: c.TxFrames, TxBytes: c.TxBytes, Drops: c.Drops}
}

// Lab is the running lab.
func (d *Daemon) Lab() *proto.Lab {
	lab := &proto.Lab{Network: d.Cfg.NetworkName}
	ports, lans := d.Fab.Snapshot()
	for _, p := range ports {
		lab.Ports = append(lab.Ports, proto.Port{Name: p.Name, Kind: p.Kind, Socket: p.Socket, Connected: p.Connected, Lans: p.Lans, Counters: counters(p.Counters)})
	}
	for _, l := range lans {
		lab.Lans = append(lab.Lans, proto.Lan{Name: l.Name, Ports: l.Ports, Counters: counters(l.Counters)})
	}
	for _, f := range d.listers {
		f(d, lab)
	}
	d.listMgmt(lab)
	d.fillPositions(lab)
	d.fillImpairs(lab)
	d.fillLinks(lab) // lifecycle.go
	lab.Normalize()
	return lab
}

// PortLans returns the lans a port is on.
func (d *Daemon) PortLans(name string) []string {
	ports, _ := d.Fab.Snapshot()
	for _, p := range ports {
		if p.Name == name {
			return p.Lans
		}
	}
	return []string{}
}
