package main

import "io"

// graphConsole opens a VM's serial console for the graph page, the same
// way `cloonix console` does (the switch names the console's socket).
func graphConsole(vm string) (io.ReadWriteCloser, error) {
	return openConsole(vm)
}
