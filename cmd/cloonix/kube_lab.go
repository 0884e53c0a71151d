package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/config"
	"cloonix/internal/daemon"
	"cloonix/internal/kube"
	"cloonix/internal/proto"
)

// kubeFlags are the flags every lab command shares.
type kubeFlags struct {
	kubeconfig, namespace string
}

func (f *kubeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else ~/.kube/config)")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "default", "namespace of the lab")
}

func (f *kubeFlags) client() (*kube.Client, error) {
	return kube.NewClient(kube.KubeconfigPath(f.kubeconfig))
}

func newKubeDeployCmd(apply bool) *cobra.Command {
	var f kubeFlags
	var o kube.DeployOptions
	use, short := "deploy PATH --name LAB", "run a topology file or demo folder of cnt nodes on the cluster as lab LAB"
	if apply {
		use, short = "apply PATH --name LAB", "apply a changed topology to a deployed lab (pods of unchanged nodes keep running)"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := f.client()
			if err != nil {
				return err
			}
			o.Path, o.Namespace, o.Log = args[0], f.namespace, os.Stdout
			if apply {
				return k.Apply(o)
			}
			return k.Deploy(o)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&o.Name, "name", "", "the lab's name (a DNS label)")
	cmd.Flags().StringVar(&o.Registry, "registry", "", "registry prefix of the images (as given to kube images)")
	cmd.Flags().StringToStringVar(&o.Pins, "pin", nil, "NODE=K8SNODE: run lab node NODE on Kubernetes node K8SNODE (repeatable; wins over the file's <k8s_node>)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newKubeListCmd() *cobra.Command {
	var f kubeFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use: "list LAB [--json]", Short: "a deployed lab's nodes, their pods and Kubernetes nodes, eths and lans",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := f.client()
			if err != nil {
				return err
			}
			l, err := k.List(f.namespace, args[0])
			if err != nil {
				return err
			}
			return kube.PrintList(os.Stdout, l, asJSON)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the ctrl list --json shape plus pod and k8s_node)")
	return cmd
}

func newKubeExecCmd() *cobra.Command {
	var f kubeFlags
	cmd := &cobra.Command{
		Use: "exec LAB NODE -- CMD...", Short: "run a command in a lab node's pod; exits with its code",
		Args: cobra.MinimumNArgs(3),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := f.client()
			if err != nil {
				return err
			}
			code, err := k.Exec(context.Background(), f.namespace, args[0], args[1], args[2:], os.Stdout, os.Stderr)
			if err != nil {
				return err
			}
			if code != 0 {
				os.Exit(code & 0xff) // the command's own code, as cloonix exec does
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newKubeDestroyCmd() *cobra.Command {
	var f kubeFlags
	cmd := &cobra.Command{
		Use: "destroy LAB", Short: "delete a lab and every object deploy made for it", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := f.client()
			if err != nil {
				return err
			}
			return k.Destroy(f.namespace, args[0], os.Stdout)
		},
	}
	f.add(cmd)
	return cmd
}

// inClusterOrConfig: the pod's service account with --in-cluster, else
// the kubeconfig.
func inClusterOrConfig(f *kubeFlags, in bool) (*kube.Client, string, error) {
	if in {
		k, err := kube.InClusterClient()
		return k, os.Getenv("CLOONIX_NAMESPACE"), err
	}
	k, err := f.client()
	return k, f.namespace, err
}

func stopOnSignal() <-chan struct{} {
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; close(stop) }()
	return stop
}

func newKubeControllerCmd() *cobra.Command {
	var f kubeFlags
	var in bool
	cmd := &cobra.Command{
		Use: "controller", Short: "reconcile the labs of a namespace (deploy runs it in the cluster; this runs it here)",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			k, ns, err := inClusterOrConfig(&f, in)
			if err != nil {
				return err
			}
			return k.RunController(ns, time.Second, os.Stderr, stopOnSignal())
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&in, "in-cluster", false, "use the pod's service account")
	return cmd
}

// newKubeSwitchCmd is the DaemonSet's program: a cloonix switch in this
// process, driven by the kube.Switch agent.
func newKubeSwitchCmd() *cobra.Command {
	return &cobra.Command{
		Use: "switch", Short: "the switch DaemonSet's program (runs in its pod)", Args: cobra.NoArgs, Hidden: true,
		RunE: func(c *cobra.Command, args []string) error {
			k, err := kube.InClusterClient()
			if err != nil {
				return err
			}
			cfg, err := config.Parse([]byte(`<cloonix_config><network_name>kube</network_name>
<work_dir>/run/cloonix-kube</work_dir><server_port>-1</server_port><no_nat>true</no_nat><mgmt>off</mgmt>
<password>`+config.RandomPassword()+`</password></cloonix_config>`), "kube switch")
			if err != nil {
				return err
			}
			if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
				return err
			}
			d := daemon.New(cfg)
			errc := make(chan error, 1)
			go func() { errc <- d.Run() }()
			var sw *proto.Client
			for i := 0; ; i++ {
				if sw, err = proto.Dial("unix:"+cfg.ServerName, cfg.Password); err == nil {
					break
				}
				if i == 100 {
					return fmt.Errorf("the switch does not answer on %s: %v", cfg.ServerName, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			stop := stopOnSignal()
			s := &kube.Switch{K: k, NS: os.Getenv("CLOONIX_NAMESPACE"), Node: os.Getenv("CLOONIX_NODE"),
				SW: sw, Net: kube.Netlink{}, Log: os.Stderr}
			go s.Run(time.Second, stop)
			select {
			case <-stop:
				d.Stop()
				return <-errc
			case err := <-errc:
				return err
			}
		},
	}
}
