package machine

import (
	"crypto/sha256"
	"fmt"

	"cloonix/internal/guest"
)

// MAC returns the address of a VM's eth n: locally administered, unicast,
// derived from the VM name and n, so a topology gets the same addresses
// on every run (ARP caches, captures and demo scripts stay valid).
func MAC(vm string, n int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("cloonix/%s/eth%d", vm, n)))
	// 02 = locally administered unicast; the next byte marks cloonix.
	return fmt.Sprintf("02:c1:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3])
}

// MgmtMAC is the address of a VM's mgmt0: its own prefix (see
// guest.MgmtMACPrefix) tells the agent which NIC it is.
func MgmtMAC(vm string) string {
	h := sha256.Sum256([]byte("cloonix/" + vm + "/mgmt0"))
	return fmt.Sprintf("%s%02x:%02x:%02x:%02x", guest.MgmtMACPrefix, h[0], h[1], h[2], h[3])
}
