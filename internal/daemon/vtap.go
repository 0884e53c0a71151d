package daemon

import (
	"cloonix/internal/fabric"
	"cloonix/internal/machine"
	"cloonix/internal/tux"
)

// A QEMU guest's eth on a tap (machine/qemu_tap.go): QEMU holds the tap's
// descriptor, the switch a packet socket on its interface, which reads
// and writes frames behind the same virtio-net header as a node's tap
// descriptor. So the port is a tux.TapConn on that socket:
// super frames from the guest cross whole toward MACs that take them, and
// reach the guest whole, with a GSO header.
func (d *Daemon) listenVTap(name string) (fabric.Listener, error) {
	sock, release, err := machine.OpenVTap(name)
	if err != nil {
		return nil, err
	}
	c, err := tux.NewTapConn(sock, tux.TapOptions{Name: name, MACs: &d.tuxSh.macs, Hold: true})
	if err != nil {
		release()
		return nil, err
	}
	return newTapListener(name, c, release), nil
}
