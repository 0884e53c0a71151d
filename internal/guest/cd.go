package guest

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// CDSpec is what the config CD of one VM carries.
type CDSpec struct {
	Name       string // the VM's name, its hostname
	SSHKey     string // a public key line for root's authorized_keys ("" : none)
	DeleteCmds string // shell commands run in the guest before the trees are copied
	// Trees are host directories copied into the guest's / in order, later
	// wins: files_to_add_in_all_targets then files_to_add_in_<VM>.
	Trees []string
	Eths  int // how many eths the VM has (the agent names them eth0..)
	// Mgmt is mgmt0's address "ADDR/LEN" on the management network
	// ("": none); the agent sets it at boot, with no route beyond it.
	Mgmt string
}

// Files on the CD. The NoCloud files are for cloud-init in stock images;
// the cloonix/ ones are for our agent (a tar keeps modes and symlinks).
const (
	CDLabel     = "cidata"
	cdSpecFile  = "cloonix/spec.json"
	cdTreesFile = "cloonix/trees.tar"
	cdDelete    = "cloonix/delete.sh"
)

// cdSpecJSON is cloonix/spec.json.
type cdSpecJSON struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	SSHKey  string `json:"ssh_key,omitempty"`
	Eths    int    `json:"eths"`
	Mgmt    string `json:"mgmt,omitempty"`
}

// CDContent is the config as the agent reads it back from the CD.
type CDContent struct {
	Name       string
	SSHKey     string
	DeleteCmds string
	Eths       int
	Mgmt       string // mgmt0's "ADDR/LEN", "" for none
	Trees      []byte // a tar archive; extract in order, later entries win
}

// maxTreeBytes bounds the demo files put on one CD.
const maxTreeBytes = 512 << 20

// WriteCD writes the config CD for spec to path (ISO9660 with Rock
// Ridge, label "cidata"), atomically. It refuses demo trees holding
// special files or symlinks that lead out of their tree, naming the file.
func WriteCD(path string, spec CDSpec) error {
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/\x00\n") {
		return fmt.Errorf("config CD: bad VM name %q", spec.Name)
	}
	if spec.Mgmt != "" {
		if _, err := netip.ParsePrefix(spec.Mgmt); err != nil {
			return fmt.Errorf("config CD: management address %q: want ADDR/LEN", spec.Mgmt)
		}
	}
	if strings.ContainsAny(spec.SSHKey, "\n\r") && strings.Count(strings.TrimSpace(spec.SSHKey), "\n") > 0 {
		return errors.New("config CD: the ssh key must be one line (the content of a .pub file)")
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	var files []cloudFile
	for _, tree := range spec.Trees {
		fl, err := addTree(tw, tree)
		if err != nil {
			return err
		}
		files = append(files, fl...)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if tarBuf.Len() > maxTreeBytes {
		return fmt.Errorf("config CD: demo files are %d MB, at most %d MB", tarBuf.Len()>>20, maxTreeBytes>>20)
	}
	stage, err := os.MkdirTemp(filepath.Dir(path), ".cd-stage-")
	if err != nil {
		return fmt.Errorf("config CD: %v", err)
	}
	defer os.RemoveAll(stage)
	sj, _ := json.MarshalIndent(cdSpecJSON{Version: 1, Name: spec.Name, SSHKey: strings.TrimSpace(spec.SSHKey), Eths: spec.Eths, Mgmt: spec.Mgmt}, "", "  ")
	content := map[string][]byte{
		"meta-data":      metaData(spec.Name),
		"user-data":      userData(spec, files),
		cdSpecFile:       append(sj, '\n'),
		cdTreesFile:      tarBuf.Bytes(),
		cdDelete:         []byte(spec.DeleteCmds),
		"cloonix/README": []byte("cloonix config CD: spec.json, delete.sh (run first), trees.tar (extracted into / in order)\n"),
	}
	for name, data := range content {
		p := filepath.Join(stage, "root", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("config CD: %v", err)
		}
	}
	tmp := filepath.Join(stage, "cd.iso")
	if err := writeISO(tmp, filepath.Join(stage, "root")); err != nil {
		return fmt.Errorf("config CD %s: %v", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("config CD: %v", err)
	}
	return nil
}

func writeISO(path, root string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	b := file.New(f, false)
	fsys, err := iso9660.Create(b, 0, 0, 2048, root)
	if err != nil {
		return err
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: CDLabel}); err != nil {
		return err
	}
	// ECMA-119 pads the volume identifier (PVD at sector 16, offset 40,
	// 32 bytes) with spaces; the library leaves NULs, which some label
	// readers keep.
	var vid [32]byte
	if _, err := f.ReadAt(vid[:], 16*2048+40); err != nil {
		return err
	}
	for i := range vid {
		if vid[i] == 0 {
			vid[i] = ' '
		}
	}
	if _, err := f.WriteAt(vid[:], 16*2048+40); err != nil {
		return err
	}
	return f.Close()
}

// cloudFile is a regular demo file for cloud-init's write_files.
type cloudFile struct {
	path string
	mode fs.FileMode
	data []byte
}

// addTree adds the tree at dir to tw, checking every entry first.
func addTree(tw *tar.Writer, dir string) ([]cloudFile, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("demo files: %v", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("demo files: %s is not a directory", dir)
	}
	var files []cloudFile
	var total int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("demo files: %v", err)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if !validRel(rel) {
			return fmt.Errorf("demo file %s: bad path name", p)
		}
		info, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("demo files: %v", err)
		}
		hdr := &tar.Header{Name: rel, Mode: int64(info.Mode().Perm()), ModTime: info.ModTime(), Format: tar.FormatPAX}
		// tar wants the classic mode bits for setuid etc.
		if info.Mode()&fs.ModeSetuid != 0 {
			hdr.Mode |= 0o4000
		}
		if info.Mode()&fs.ModeSetgid != 0 {
			hdr.Mode |= 0o2000
		}
		if info.Mode()&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		switch {
		case info.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			return tw.WriteHeader(hdr)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("demo files: %v", err)
			}
			if err := checkLink(rel, target); err != nil {
				return fmt.Errorf("demo file %s: %v", p, err)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
			return tw.WriteHeader(hdr)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("demo files: %v", err)
			}
			total += int64(len(data))
			if total > maxTreeBytes {
				return fmt.Errorf("demo files in %s: more than %d MB", dir, maxTreeBytes>>20)
			}
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(data))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
			files = append(files, cloudFile{path: "/" + rel, mode: info.Mode().Perm(), data: data})
			return nil
		default:
			return fmt.Errorf("demo file %s: %s files cannot be copied into a guest (only files, directories and symlinks)", p, info.Mode().Type())
		}
	})
	return files, err
}

// validRel reports whether rel is a clean relative slash path.
func validRel(rel string) bool {
	if rel == "" || strings.HasPrefix(rel, "/") || strings.ContainsRune(rel, 0) || path.Clean(rel) != strings.TrimSuffix(rel, "/") {
		return false
	}
	for _, c := range strings.Split(strings.TrimSuffix(rel, "/"), "/") {
		if c == ".." || c == "." || c == "" {
			return false
		}
	}
	return true
}

// checkLink refuses a relative symlink that climbs out of the tree (it
// would point outside what the demo describes). Absolute targets name
// guest paths and are kept as they are.
func checkLink(rel, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return errors.New("empty symlink")
	}
	if path.IsAbs(target) {
		return nil
	}
	j := path.Join(path.Dir(rel), target)
	if j == ".." || strings.HasPrefix(j, "../") {
		return fmt.Errorf("symlink to %q leads out of its tree; use a path inside the tree or an absolute guest path", target)
	}
	return nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func metaData(name string) []byte {
	return []byte(fmt.Sprintf("instance-id: cloonix-%s\nlocal-hostname: %s\n", name, name))
}

// yq quotes s as a YAML double-quoted scalar (JSON strings are valid ones).
func yq(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// userData is cloud-init's #cloud-config for stock cloud images.
func userData(spec CDSpec, files []cloudFile) []byte {
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	fmt.Fprintf(&b, "hostname: %s\n", yq(spec.Name))
	b.WriteString("preserve_hostname: false\n")
	if k := strings.TrimSpace(spec.SSHKey); k != "" {
		b.WriteString("disable_root: false\n")
		fmt.Fprintf(&b, "ssh_authorized_keys:\n  - %s\n", yq(k))
	}
	if strings.TrimSpace(spec.DeleteCmds) != "" {
		fmt.Fprintf(&b, "bootcmd:\n  - [sh, -c, %s]\n", yq(spec.DeleteCmds))
	}
	// Later trees win: keep the last version of each path.
	last := map[string]int{}
	for i, f := range files {
		last[f.path] = i
	}
	var idx []int
	for _, i := range last {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	if len(idx) > 0 {
		b.WriteString("write_files:\n")
		for _, i := range idx {
			f := files[i]
			fmt.Fprintf(&b, "  - path: %s\n    permissions: %s\n    encoding: b64\n    content: %s\n",
				yq(f.path), yq(fmt.Sprintf("0%o", f.mode)), yq(b64(f.data)))
		}
	}
	return []byte(b.String())
}

// ReadCD reads the config written by WriteCD from an ISO image or a raw
// CD block device.
func ReadCD(path string) (*CDContent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config CD: %v", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("config CD %s: %v", path, err)
	}
	return readCD(f, size)
}

func openISO(f fs.File, size int64) (*iso9660.FileSystem, error) {
	return iso9660.Read(file.New(f, true), size, 0, 2048)
}

// readCD parses an ISO; a malformed one is an error, never a panic.
func readCD(f fs.File, size int64) (c *CDContent, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("config CD: malformed ISO9660 (%v)", r)
		}
	}()
	fsys, err := openISO(f, size)
	if err != nil {
		return nil, fmt.Errorf("config CD: %v", err)
	}
	read := func(name string) ([]byte, error) {
		fh, err := fsys.OpenFile("/"+name, os.O_RDONLY)
		if err != nil {
			return nil, fmt.Errorf("config CD: %s: %v", name, err)
		}
		defer fh.Close()
		// A corrupt size must not make us chase bytes that are not there.
		data, err := io.ReadAll(io.LimitReader(fh, min(size, maxTreeBytes)+1))
		if err != nil {
			return nil, fmt.Errorf("config CD: %s: %v", name, err)
		}
		return data, nil
	}
	sj, err := read(cdSpecFile)
	if err != nil {
		return nil, err
	}
	var spec cdSpecJSON
	if err := json.Unmarshal(sj, &spec); err != nil {
		return nil, fmt.Errorf("config CD: %s: %v", cdSpecFile, err)
	}
	c = &CDContent{Name: spec.Name, SSHKey: spec.SSHKey, Eths: spec.Eths, Mgmt: spec.Mgmt}
	del, err := read(cdDelete)
	if err != nil {
		return nil, err
	}
	c.DeleteCmds = string(del)
	if c.Trees, err = read(cdTreesFile); err != nil {
		return nil, err
	}
	return c, nil
}
