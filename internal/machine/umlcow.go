package machine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// A UML COW file (ubd0=COW,BACKING) holds a header naming its backing
// file, a bitmap with one bit per sector (set: the sector lives in the
// COW), then the sectors. MergeUMLCow writes COW over backing into a
// standalone image, as uml_moo does (uml-utilities is not in Debian 12,
// so the format is read here; see arch/um/drivers/cow_user.c).

const (
	cowMagic    = 0x4f4f4f4d // "OOOM", big-endian
	cowV3Header = 4 + 4 + 4 + 8 + 4 + 4 + 4 + 4096
)

// umlCow is a parsed COW header.
type umlCow struct {
	backing    string
	size       int64
	sectorSize int64
	bitmapOff  int64
	dataOff    int64
}

func roundUp(x, a int64) int64 { return (x + a - 1) / a * a }

// readUMLCow parses the header of a version 3 COW file (the only one UML
// writes since 2005).
func readUMLCow(f io.ReaderAt) (*umlCow, error) {
	h := make([]byte, cowV3Header)
	if _, err := f.ReadAt(h, 0); err != nil {
		return nil, fmt.Errorf("COW header: %v", err)
	}
	be := binary.BigEndian
	if be.Uint32(h[0:]) != cowMagic {
		return nil, errors.New("not a UML COW file (bad magic)")
	}
	if v := be.Uint32(h[4:]); v != 3 {
		return nil, fmt.Errorf("UML COW version %d: only version 3 is read", v)
	}
	c := &umlCow{size: int64(be.Uint64(h[12:])), sectorSize: int64(be.Uint32(h[20:]))}
	align := int64(be.Uint32(h[24:]))
	if be.Uint32(h[28:]) != 0 {
		return nil, errors.New("UML COW: unknown format (not a bitmap)")
	}
	if c.sectorSize <= 0 || c.sectorSize > 1<<16 || align <= 0 || align > 1<<20 || c.size < 0 || c.size > 1<<44 {
		return nil, fmt.Errorf("UML COW: implausible header (size %d, sector %d, align %d)", c.size, c.sectorSize, align)
	}
	name := h[32:]
	if i := indexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	c.backing = string(name)
	c.bitmapOff = roundUp(cowV3Header, align)
	bitmapLen := (c.size/c.sectorSize + boolInt(c.size%c.sectorSize != 0) + 7) / 8
	c.dataOff = roundUp(c.bitmapOff+bitmapLen, align)
	return c, nil
}

func indexByte(b []byte, x byte) int {
	for i, y := range b {
		if y == x {
			return i
		}
	}
	return -1
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// MergeUMLCow writes the disk that cowPath shows over its backing file
// to dst (created, mode 0600). progress, if set, gets bytes done and total.
func MergeUMLCow(cowPath, dst string, progress func(done, total int64)) error {
	cf, err := os.Open(cowPath)
	if err != nil {
		return err
	}
	defer cf.Close()
	c, err := readUMLCow(cf)
	if err != nil {
		return fmt.Errorf("%s: %v", cowPath, err)
	}
	bf, err := os.Open(c.backing)
	if err != nil {
		return fmt.Errorf("%s: its backing file: %v", cowPath, err)
	}
	defer bf.Close()
	nsec := (c.size + c.sectorSize - 1) / c.sectorSize
	bitmap := make([]byte, (nsec+7)/8)
	if _, err := cf.ReadAt(bitmap, c.bitmapOff); err != nil && err != io.EOF {
		return fmt.Errorf("%s: bitmap: %v", cowPath, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(dst)
		}
	}()
	// Runs of sectors from one source are copied in chunks of up to 1 MiB;
	// all-zero chunks are skipped so the image stays sparse.
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	inCow := func(s int64) bool { return bitmap[s/8]&(1<<(s%8)) != 0 }
	for s := int64(0); s < nsec; {
		src, off := io.ReaderAt(bf), s*c.sectorSize
		if inCow(s) {
			src, off = cf, c.dataOff+s*c.sectorSize
		}
		n := int64(1)
		for s+n < nsec && inCow(s+n) == inCow(s) && (n+1)*c.sectorSize <= chunk {
			n++
		}
		b := buf[:min(n*c.sectorSize, c.size-s*c.sectorSize)]
		if _, err := src.ReadAt(b, off); err != nil && err != io.EOF {
			return fmt.Errorf("reading %s: %v", cowPath, err)
		}
		if !allZero(b) {
			if _, err := out.WriteAt(b, s*c.sectorSize); err != nil {
				return err
			}
		}
		s += n
		if progress != nil {
			progress(min(s*c.sectorSize, c.size), c.size)
		}
	}
	if err := out.Truncate(c.size); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	ok = true
	return out.Close()
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
