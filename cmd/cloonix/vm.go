package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"cloonix/internal/machine/kinds"
	"cloonix/internal/proto"
)

var (
	vmType, vmRootfs, vmTransport, vmKernel, vmDemo string
	vmMem, vmCPU, vmEth, vmBootTimeout              int
	vmWait                                          bool
)

var addVMCmd = &cobra.Command{
	Use:   "vm NAME",
	Short: "add a virtual machine (QEMU/KVM or UML) with its eths as ports NAME:eth0...",
	Long: `add a virtual machine. Its COW disk, config CD, sockets and logs go to work_dir/NAME;
its eths are switch ports NAME:eth0, NAME:eth1, ... (attach them with ctrl attach).
The command returns once the guest process runs (state booting); with --wait, once its agent
answers (state running) or it failed. --rootfs is an image of bulk_dir (NAME.img or NAME.qcow2)
or an absolute path to one.`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		req := &proto.AddVM{Name: args[0], Type: vmType, Rootfs: vmRootfs, Transport: vmTransport, Kernel: vmKernel, Wait: vmWait}
		f := cmd.Flags()
		if f.Changed("mem") {
			req.Mem = proto.Int(vmMem)
		}
		if f.Changed("cpu") {
			req.CPU = proto.Int(vmCPU)
		}
		if f.Changed("eth") {
			req.Eth = proto.Int(vmEth)
		}
		if vmBootTimeout > 0 {
			req.BootTimeout = proto.Int(vmBootTimeout)
		}
		if vmDemo != "" {
			abs, err := filepath.Abs(vmDemo)
			if err != nil {
				return err
			}
			req.Demo = abs
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

func init() {
	f := addVMCmd.Flags()
	// The node kinds are the switch's list; kvm is QEMU.
	f.StringVar(&vmType, "type", "kvm", "node kind: "+strings.Join(kinds.All().Names(), ", ")+" (kvm: QEMU, KVM when it works, TCG otherwise)")
	f.IntVar(&vmMem, "mem", 256, "memory in MB")
	f.IntVar(&vmCPU, "cpu", 1, "CPUs (UML: 1)")
	f.IntVar(&vmEth, "eth", 1, "number of eths")
	f.StringVar(&vmRootfs, "rootfs", "busybox", "root image: a name of bulk_dir or an absolute path")
	f.StringVar(&vmTransport, "uml-transport", "", "UML eth transport: bess (default) or daemon (uml_switch)")
	f.StringVar(&vmKernel, "kernel", "", "kernel (QEMU, default bulk_dir/vmlinuz) or linux binary (UML, default linux.uml)")
	f.StringVar(&vmDemo, "demo", "", "demo folder whose files_to_add_in_* trees and delete commands apply to this VM")
	f.IntVar(&vmBootTimeout, "boot-timeout", 0, "seconds before a vm_boot_timeout event (default 90, 180 under TCG)")
	f.BoolVar(&vmWait, "wait", false, "return once the guest's agent answers (or fail if it crashed or timed out)")
	ctrlAddCmd.AddCommand(addVMCmd)
	ctrlDelCmd.AddCommand(simple("vm NAME", "stop a virtual machine and free its ports and files", 1,
		func(a []string) proto.Request { return &proto.DelVM{Name: a[0]} }))
}
