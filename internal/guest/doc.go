// Package guest is both ends of what cloonix puts inside a virtual
// machine, apart from the kernel:
//
//   - the config CD (cd.go): WriteCD builds, on the host, the ISO 9660
//     image a guest gets as its second disk (hostname, eth count, SSH key,
//     the demo's file trees and delete commands); ReadCD and apply.go read
//     and apply it inside the guest;
//   - the agent (agent_linux.go, modules_linux.go, netif_linux.go; the
//     binary is cmd/cloonix-agent, small on purpose: it runs in 64 MB guests): PID 1
//     of the busybox image (RunInit, Boot), or a service of other images
//     (ApplyOnce, Serve). It mounts what the guest needs, loads modules,
//     names the eths eth0, eth1, ... in order, applies the CD once and
//     serves the agent line;
//   - the agent line (proto.go): framed messages (magic, request id,
//     length, CRC) on a serial line that may carry noise,
//     with Server (the guest end: ping and exec in process groups) and
//     Client (the host end, used by internal/machine for `cloonix exec`
//     and the boot wait).
//
// The guest half runs inside guests, so the package imports no other
// cloonix package; the host uses WriteCD and Client.
package guest
