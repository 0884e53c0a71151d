package main

import (
	"fmt"
	"io"
)

// graphConsole opens a VM's serial console for the graph page.
// TODO(console): wire to the switch's console plumbing once it lands.
func graphConsole(vm string) (io.ReadWriteCloser, error) {
	return nil, fmt.Errorf("console of %s: this cloonix has no console support yet", vm)
}
