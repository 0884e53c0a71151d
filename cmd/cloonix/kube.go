package main

import (
	"os"

	"github.com/spf13/cobra"

	"cloonix/internal/kube"
	"cloonix/internal/machine/cnt"
)

// newKubeCmd: cloonix kube ... (labs on Kubernetes, docs/kubernetes.md).
func newKubeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kube",
		Short: "run labs on a Kubernetes cluster (docs/kubernetes.md)",
	}
	cmd.AddCommand(newKubeImagesCmd(), newKubeDeployCmd(false), newKubeDeployCmd(true), newKubeListCmd(),
		newKubeExecCmd(), newKubeDestroyCmd(), newKubeControllerCmd(), newKubeSwitchCmd())
	return cmd
}

func newKubeImagesCmd() *cobra.Command {
	var out, registry, cache string
	cmd := &cobra.Command{
		Use:   "images --out DIR [ROOTFS...]",
		Short: "write docker-archive tarballs of the switch image and of each rootfs (default: the bulk images)",
		Long: "write DIR/switch.tar (the cloonix binary on busybox-static) and DIR/rootfs-NAME.tar for each\n" +
			"ROOTFS (a bulk image name such as busybox or debian-frr, or any --rootfs of a cnt node;\n" +
			"none: the bulk images present). Import them on each node with\n" +
			"  ctr -n k8s.io images import DIR/NAME.tar\n" +
			"or load and push them to a registry named by --registry.",
		RunE: func(c *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			_, err = kube.WriteImages(kube.ImagesOptions{
				OutDir: out, Rootfs: args, Registry: registry, Cloonix: self, Log: os.Stdout,
				Store: cnt.Store{BulkDir: bulkDir(), CacheDir: cache},
			})
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the archives into")
	cmd.Flags().StringVar(&registry, "registry", "", "registry prefix of the image names (e.g. registry.example:5000/lab)")
	cmd.Flags().StringVar(&cache, "cache-dir", "", "where bulk images are unpacked (default bulk_dir/.cnt, as cnt nodes do)")
	cmd.Flags().StringVar(&rootOpts.bulkDir, "bulk-dir", "", "directory of the bulk images (default: the config's bulk_dir)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func init() {
	rootCmd.AddCommand(newKubeCmd())
}
