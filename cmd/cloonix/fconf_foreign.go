package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"cloonix/internal/labfmt"
	"cloonix/internal/topology"
)

var fconfConvertCmd = &cobra.Command{
	Use:   "convert SRC DIR",
	Short: "write a Kathará lab folder or containerlab topology as a native demo folder",
	Long: "convert reads a Kathará lab (a folder holding lab.conf) or a containerlab topology\n" +
		"(FILE.clab.yml) and writes DIR: a topology file and files_to_add_in_NODE trees that\n" +
		"`cloonix fconf load DIR` runs as the same lab (see docs/foreign-labs.md).",
	Args: cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		if _, _, ok := labfmt.Detect(args[0]); !ok {
			return fmt.Errorf("%s: neither a Kathará lab (a folder holding lab.conf) nor a containerlab topology (*.clab.yml)", args[0])
		}
		lab, err := readForeign(args[0], fconfOpts)
		if err != nil {
			return err
		}
		if err := lab.Write(args[1], asType(fconfOpts)); err != nil {
			return err
		}
		if _, err := topology.Load(args[1]); err != nil {
			return fmt.Errorf("the converted folder does not load (a cloonix bug, please report it): %v", err)
		}
		fmt.Printf("converted %s lab %s: %d nodes to %s\n", lab.Format, args[0], len(lab.Nodes), args[1])
		return nil
	},
}

func asType(o fconfOptions) string {
	if o.as == "" {
		return labfmt.DefaultAs()
	}
	return o.as
}

// readForeign parses a foreign lab with the image map of the config and
// --image, and prints its warnings.
func readForeign(path string, o fconfOptions) (*labfmt.Lab, error) {
	images := map[string]string{}
	if cfg, err := loadConfig(); err == nil {
		if m, err := cfg.Images(); err == nil {
			images = m
		}
	}
	for _, s := range o.images {
		if err := labfmt.ParseImageFlag(images, s); err != nil {
			return nil, err
		}
	}
	lab, err := labfmt.Read(path, labfmt.Options{As: o.as, Images: images})
	if err != nil {
		return nil, err
	}
	for _, w := range lab.Warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	return lab, nil
}

// loadDemo reads a native topology or demo folder, or a foreign lab
// converted into a demo folder of the user's cache (kept: the switch
// reads a guest's demo files when it adds the guest). The lab is nil for
// a native one.
func loadDemo(path string, plan io.Writer, o fconfOptions) (*topology.Demo, error) {
	if _, _, ok := labfmt.Detect(path); !ok {
		if o.as != "" || len(o.images) > 0 {
			return nil, fmt.Errorf("%s: --as and --image apply to Kathará and containerlab labs only", path)
		}
		return topology.Load(path)
	}
	lab, err := readForeign(path, o)
	if err != nil {
		return nil, err
	}
	if o.plan {
		// A plan changes nothing: the folder a running lab reads its
		// guests' files from stays as it is; the plan converts into a
		// temporary one.
		tmp, err := os.MkdirTemp("", "cloonix-plan-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := lab.Write(tmp, asType(o)); err != nil {
			return nil, fmt.Errorf("converting %s: %v", path, err)
		}
		fmt.Fprint(plan, lab.Plan())
		return topology.Load(tmp)
	}
	dir, err := convertedDir(lab)
	if err != nil {
		return nil, err
	}
	if err := lab.Write(dir, asType(o)); err != nil {
		return nil, fmt.Errorf("converting %s into %s: %v", path, dir, err)
	}
	return topology.Load(dir)
}

// convertedDir is where a foreign lab's demo folder lives while it runs:
// one per source path, under the switch's work_dir (private to the user,
// gone with the lab), else under the user's cache.
func convertedDir(lab *labfmt.Lab) (string, error) {
	var base string
	if cfg, err := loadConfig(); err == nil && cfg.WorkDir != "" {
		base = filepath.Join(cfg.WorkDir, "labs")
	} else {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(cache, "cloonix", "labs")
	}
	abs, _ := filepath.Abs(lab.Src)
	sum := sha256.Sum256([]byte(abs))
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, lab.Name)
	if name == "" {
		name = filepath.Base(filepath.Dir(abs))
	}
	dir := filepath.Join(base, lab.Format+"-"+name+"-"+hex.EncodeToString(sum[:4]))
	return dir, os.MkdirAll(base, 0o700)
}

func init() {
	for _, c := range []*cobra.Command{fconfLoadCmd, fconfConvertCmd} {
		c.Flags().StringVar(&fconfOpts.as, "as", "", "Kathará/containerlab labs: run the nodes as cnt, uml or kvm (default "+labfmt.DefaultAs()+")")
		c.Flags().StringArrayVar(&fconfOpts.images, "image", nil, "Kathará/containerlab labs: run IMAGE as ROOTFS (IMAGE=ROOTFS, repeatable; wins over <image_map>)")
	}
	fconfCmd.AddCommand(fconfConvertCmd)
}
