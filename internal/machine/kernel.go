package machine

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// QEMU boots an uncompressed ELF vmlinux directly through its PVH entry
// point, skipping the bzImage's decompressor: under TCG, where every
// instruction is emulated, that halves a busybox boot (3.5 s instead of
// 6 s to the console here). Debian ships only the bzImage, so the
// ELF inside it is unpacked once into the user's cache directory, named
// by the bzImage's sha256, and used when it has a PVH entry note.

const xenElfnotePhys32Entry = 18

var pvhMu sync.Mutex

// PVHKernel returns an ELF kernel with a PVH entry unpacked from the
// bzImage at path, or path itself when that cannot be done.
func PVHKernel(path string) (string, error) {
	// The bulk kernel is usually an ELF already: tell from its first
	// bytes instead of reading 66 MB at every VM start.
	if isELF(path) {
		return path, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return path, err
	}
	if bytes.HasPrefix(b, []byte("\x7fELF")) {
		return path, nil
	}
	sum := sha256.Sum256(b)
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "cloonix", "kernels")
	out := filepath.Join(dir, hex.EncodeToString(sum[:16])+".elf")
	pvhMu.Lock()
	defer pvhMu.Unlock()
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	img, err := unpackBzImage(b)
	if err != nil {
		return path, err
	}
	if !hasPVHNote(img) {
		return path, errors.New("the kernel has no PVH entry point")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return path, err
	}
	tmp, err := os.CreateTemp(dir, ".unpack-*")
	if err != nil {
		return path, err
	}
	if _, err := tmp.Write(img); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return path, err
	}
	tmp.Close()
	// Rename is atomic: another switch unpacking the same kernel at
	// the same time only wastes its work.
	if err := os.Rename(tmp.Name(), out); err != nil {
		os.Remove(tmp.Name())
		return path, err
	}
	return out, nil
}

// unpackBzImage finds the compressed payload (xz or gzip) of a bzImage
// and returns it uncompressed when it is an ELF file.
func unpackBzImage(b []byte) ([]byte, error) {
	if i := bytes.Index(b, []byte("\xfd7zXZ\x00")); i >= 0 {
		// The kernel's xz stream uses the x86 BCJ filter, which Go's xz
		// packages lack: xz-utils decodes it (it stops at the stream's
		// end and complains about the bytes after it, which are not ours).
		cmd := exec.Command("xz", "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(b[i:])
		var out bytes.Buffer
		cmd.Stdout = &out
		_ = cmd.Run()
		if bytes.HasPrefix(out.Bytes(), []byte("\x7fELF")) {
			return out.Bytes(), nil
		}
	}
	if i := bytes.Index(b, []byte("\x1f\x8b\x08")); i >= 0 {
		r, err := gzip.NewReader(bytes.NewReader(b[i:]))
		if err == nil {
			r.Multistream(false)
			if img, err := readELF(r); err == nil {
				return img, nil
			}
		}
	}
	return nil, errors.New("no xz or gzip compressed ELF kernel inside")
}

// readELF reads at most 512 MiB and checks the ELF magic.
func readELF(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, 512<<20)); err != nil && buf.Len() == 0 {
		return nil, err
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("\x7fELF")) {
		return nil, fmt.Errorf("not an ELF payload")
	}
	return buf.Bytes(), nil
}

// hasPVHNote looks for the Xen PHYS32_ENTRY note QEMU needs for PVH.
func hasPVHNote(img []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return false
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			continue
		}
		for len(data) >= 12 {
			namesz := binary.LittleEndian.Uint32(data[0:])
			descsz := binary.LittleEndian.Uint32(data[4:])
			typ := binary.LittleEndian.Uint32(data[8:])
			off := 12 + align4(namesz)
			end := off + align4(descsz)
			if uint64(end) > uint64(len(data)) {
				break
			}
			name := string(bytes.TrimRight(data[12:12+namesz], "\x00"))
			if name == "Xen" && typ == xenElfnotePhys32Entry {
				return true
			}
			data = data[end:]
		}
	}
	return false
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

func isELF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "\x7fELF"
}
