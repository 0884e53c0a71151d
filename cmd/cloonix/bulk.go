package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"cloonix/internal/bulk"
	"cloonix/internal/config"
)

// bulkDir is --bulk-dir, else the config's <bulk_dir>, else the default.
func bulkDir() string {
	if rootOpts.bulkDir != "" {
		return rootOpts.bulkDir
	}
	if cfg, err := config.Load(rootOpts.config, false); err == nil && cfg.BulkDir != "" {
		return cfg.BulkDir
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return home + "/cloonix_labs/bulk"
}

var bulkCmd = &cobra.Command{
	Use:   "bulk",
	Short: "the reference guest images in bulk_dir: build and list them",
}

var bulkBuildCmd = &cobra.Command{
	Use:   "build [kernels|busybox|debian-frr ...]",
	Short: "build guest images from Debian packages (all when none named; quick when up to date)",
	Long: "build guest images into bulk_dir from Debian packages, installing missing ones with apt-get:\n" +
		"  kernels     vmlinuz and initrd.img for QEMU (UML uses /usr/bin/linux.uml)\n" +
		"  busybox     busybox.img, a small rootfs for UML and QEMU with the agent\n" +
		"  debian-frr  debian-frr.img, Debian with systemd, FRR, iproute2, tcpdump, ssh and the agent\n" +
		"An image whose inputs (package versions, the agent binary) did not change is left as it is.",
	ValidArgs: bulk.Images,
	RunE: func(cmd *cobra.Command, args []string) error {
		return bulk.Build(bulkDir(), args...)
	},
}

var bulkListCmd = &cobra.Command{
	Use:   "list",
	Short: "list the images of bulk_dir and their sizes",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		dir := bulkDir()
		ims, err := bulk.List(dir)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "NAME\tKIND\tSIZE\tON DISK\tMODIFIED\n")
		for _, im := range ims {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Name, im.Kind, human(im.Size), human(im.Disk), im.ModTime.Format("2006-01-02 15:04"))
		}
		tw.Flush()
		if len(ims) == 0 {
			fmt.Printf("no images in %s (build them with `cloonix bulk build`)\n", dir)
		}
		return nil
	},
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func init() {
	bulkCmd.PersistentFlags().StringVar(&rootOpts.bulkDir, "bulk-dir", "", "the image directory (default: <bulk_dir> of the config, else ~/cloonix_labs/bulk)")
	bulkCmd.AddCommand(bulkBuildCmd, bulkListCmd)
	rootCmd.AddCommand(bulkCmd)
}
