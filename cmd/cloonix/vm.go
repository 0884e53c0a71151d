package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"cloonix/internal/machine/kinds"
	"cloonix/internal/proto"
)

// vmOptions are `ctrl add vm`'s flags.
type vmOptions struct {
	typ, rootfs, transport, kernel, demo, mgmtIP string
	mem, cpu, eth, bootTimeout                   int
	wait                                         bool
}

// request is add_vm for VM name; only the numbers given are sent (the
// switch has the defaults).
func (o *vmOptions) request(cmd *cobra.Command, name string) (*proto.AddVM, error) {
	f := cmd.Flags()
	req := &proto.AddVM{Name: name, Type: o.typ, Rootfs: o.rootfs, Transport: o.transport, Kernel: o.kernel, MgmtIP: o.mgmtIP, Wait: o.wait}
	if f.Changed("mem") {
		req.Mem = proto.Int(o.mem)
	}
	if f.Changed("cpu") {
		req.CPU = proto.Int(o.cpu)
	}
	if f.Changed("eth") {
		req.Eth = proto.Int(o.eth)
	}
	if o.bootTimeout > 0 {
		req.BootTimeout = proto.Int(o.bootTimeout)
	}
	if o.demo != "" {
		abs, err := filepath.Abs(o.demo)
		if err != nil {
			return nil, err
		}
		req.Demo = abs
	}
	return req, nil
}

func newAddVMCmd() *cobra.Command {
	var o vmOptions
	cmd := &cobra.Command{
		Use:   "vm NAME",
		Short: "add a virtual machine (QEMU/KVM or UML) with its eths as ports NAME:eth0...",
		Long: `add a virtual machine. Its COW disk, config CD, sockets and logs go to work_dir/NAME;
its eths are switch ports NAME:eth0, NAME:eth1, ... (attach them with ctrl attach).
The command returns once the guest process runs (state booting); with --wait, once its agent
answers (state running) or it failed. --rootfs is an image of bulk_dir (NAME.img or NAME.qcow2)
or an absolute path to one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := o.request(cmd, args[0])
			if err != nil {
				return err
			}
			var v proto.VMReply
			if err := do(req, &v); err != nil {
				return err
			}
			acc := ""
			if v.Accel != "" {
				acc = ", " + v.Accel
			}
			fmt.Printf("vm %s %s (pid %d%s)\n", v.Name, v.State, v.Pid, acc)
			return nil
		},
	}
	f := cmd.Flags()
	// The node kinds are the switch's list; kvm is QEMU.
	f.StringVar(&o.typ, "type", "kvm", "node kind: "+strings.Join(kinds.All().Names(), ", ")+" (kvm: QEMU, KVM when it works, TCG otherwise)")
	f.IntVar(&o.mem, "mem", 256, "memory in MB")
	f.IntVar(&o.cpu, "cpu", 1, "CPUs (UML: 1)")
	f.IntVar(&o.eth, "eth", 1, "number of eths")
	f.StringVar(&o.rootfs, "rootfs", "busybox", "root image: a name of bulk_dir or an absolute path")
	f.StringVar(&o.transport, "uml-transport", "", "UML eth transport: bess (default) or daemon (uml_switch)")
	f.StringVar(&o.mgmtIP, "mgmt-ip", "", "mgmt0's address on the management network (default: derived from NAME)")
	f.StringVar(&o.kernel, "kernel", "", "kernel (QEMU, default bulk_dir/vmlinuz) or linux binary (UML, default linux.uml)")
	f.StringVar(&o.demo, "demo", "", "demo folder whose files_to_add_in_* trees and delete commands apply to this VM")
	f.IntVar(&o.bootTimeout, "boot-timeout", 0, "seconds before a vm_boot_timeout event (default 90, 180 under TCG)")
	f.BoolVar(&o.wait, "wait", false, "return once the guest's agent answers (or fail if it crashed or timed out)")
	return cmd
}

func init() {
	ctrlAddCmd.AddCommand(newAddVMCmd())
	ctrlDelCmd.AddCommand(simple("vm NAME", "stop a virtual machine and free its ports and files", 1,
		func(a []string) proto.Request { return &proto.DelVM{Name: a[0]} }))
}
