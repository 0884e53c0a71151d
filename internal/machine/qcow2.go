package machine

import (
	"encoding/binary"
	"os"
)

// qcow2BootSector reads the first guest sector of a standalone qcow2
// image (one without a backing file, as `ctrl save` writes), so that a
// saved filesystem image is told from a saved bootable disk. ok is false
// when that cannot be read simply (a backing file, a compressed or
// external cluster): the caller then assumes a disk, as before.
func qcow2BootSector(p string) (sector []byte, ok bool) {
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	h := make([]byte, 104)
	if _, err := f.ReadAt(h, 0); err != nil {
		return nil, false
	}
	be := binary.BigEndian
	if string(h[:4]) != "QFI\xfb" || be.Uint64(h[8:]) != 0 { // backing file
		return nil, false
	}
	if be.Uint32(h[4:]) >= 3 && be.Uint64(h[72:])&^uint64(1) != 0 { // incompatible features but "dirty"
		return nil, false
	}
	clusterBits := be.Uint32(h[20:])
	if clusterBits < 9 || clusterBits > 21 || be.Uint32(h[36:]) == 0 {
		return nil, false
	}
	const offMask = 0x00fffffffffffe00
	e := make([]byte, 8)
	if _, err := f.ReadAt(e, int64(be.Uint64(h[40:]))); err != nil {
		return nil, false
	}
	l2 := be.Uint64(e) & offMask
	sector = make([]byte, 512)
	if l2 == 0 {
		return sector, true // unallocated, no backing: zeros
	}
	if _, err := f.ReadAt(e, int64(l2)); err != nil {
		return nil, false
	}
	ent := be.Uint64(e)
	if ent&(1<<62) != 0 {
		return nil, false // compressed
	}
	if ent&1 != 0 || ent&offMask == 0 {
		return sector, true // reads as zeros
	}
	if _, err := f.ReadAt(sector, int64(ent&offMask)); err != nil {
		return nil, false
	}
	return sector, true
}

// hasMBR tells whether a boot sector ends with the MBR signature.
func hasMBR(b []byte) bool { return len(b) >= 512 && b[510] == 0x55 && b[511] == 0xaa }
