package bulk

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// Booting the Debian bzImage under QEMU/TCG spends about 2.5 s before the
// kernel's first message: the real-mode setup and, mostly, decompressing
// 60 MB of XZ in emulated code. QEMU boots an uncompressed ELF vmlinux
// with a PVH entry note directly (no setup, no decompression, kernel
// command line and initrd as usual), so <bulk_dir>/vmlinuz is that ELF
// when the kernel has PVH (Debian's has CONFIG_PVH=y), else the bzImage.

// compressions found in a bzImage payload, with the command that
// decompresses one stream of them.
var compressions = []struct {
	magic []byte
	cmd   []string
}{
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, []string{"xz", "-dc", "--single-stream"}},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dcq"}},
	{[]byte{0x1f, 0x8b, 0x08}, []string{"gzip", "-dc"}},
}

// extractPVH returns the uncompressed ELF kernel of bzImage if it has a
// PVH entry point.
func extractPVH(bzImage []byte) ([]byte, error) {
	for _, c := range compressions {
		i := bytes.Index(bzImage, c.magic)
		if i < 0 {
			continue
		}
		cmd := exec.Command(c.cmd[0], c.cmd[1:]...)
		cmd.Stdin = bytes.NewReader(bzImage[i:])
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		// gzip and zstd complain about the bytes after the stream; the
		// ELF check below says whether what came out is whole.
		_ = cmd.Run()
		if err := checkPVH(out.Bytes()); err != nil {
			return nil, fmt.Errorf("%s: %v %s", c.cmd[0], err, errb.String())
		}
		return out.Bytes(), nil
	}
	return nil, errors.New("no known compressed payload in the kernel image")
}

// checkPVH accepts an x86-64 ELF holding a Xen PHYS32_ENTRY note (18).
func checkPVH(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("not an x86-64 kernel (%v)", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			return err
		}
		for len(data) >= 12 {
			nsz := binary.LittleEndian.Uint32(data[0:])
			dsz := binary.LittleEndian.Uint32(data[4:])
			typ := binary.LittleEndian.Uint32(data[8:])
			off := 12 + int(align4(nsz))
			end := off + int(align4(dsz))
			if uint64(nsz) > uint64(len(data)) || uint64(dsz) > uint64(len(data)) || end > len(data) {
				break
			}
			if nsz >= 3 && string(data[12:15]) == "Xen" && typ == 18 {
				return nil
			}
			data = data[end:]
		}
	}
	return errors.New("no PVH entry note")
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

// installKernel writes dst: the PVH ELF kernel when it can be made, else
// a copy of the bzImage. It returns which.
func installKernel(dst, vmlinuz string) (string, error) {
	bz, err := os.ReadFile(vmlinuz)
	if err != nil {
		return "", err
	}
	elfKernel, err := extractPVH(bz)
	if err != nil {
		logf("vmlinuz: keeping the compressed bzImage (%v)", err)
		return "bzImage", writeAtomic(dst, bz, 0o644)
	}
	return "uncompressed ELF, PVH entry", writeAtomic(dst, elfKernel, 0o644)
}
