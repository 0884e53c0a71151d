package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
)

// detachKey is Ctrl-] (as telnet), which ends `cloonix console`.
const detachKey = 0x1d

// openConsole connects to a VM's serial console through the socket the
// switch names (a unix socket in work_dir/VM, so the switch's host only).
// The graph page can use it too.
func openConsole(vm string) (net.Conn, error) {
	var r proto.ConsoleReply
	if err := do(&proto.Console{Name: vm}, &r); err != nil {
		return nil, err
	}
	if r.Path == "" {
		return nil, fmt.Errorf("console: bad reply from the switch: no path")
	}
	c, err := net.Dial("unix", r.Path)
	if err != nil {
		return nil, fmt.Errorf("console of %s at %s: %v (the console is reachable on the switch's host only)", vm, r.Path, err)
	}
	return c, nil
}

var consoleCmd = &cobra.Command{
	Use:   "console VM",
	Short: "attach to a guest's serial console; Ctrl-] detaches",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		c, err := openConsole(args[0])
		if err != nil {
			return err
		}
		defer c.Close()
		fd := int(os.Stdin.Fd())
		if old, err := makeRaw(fd); err == nil {
			defer restoreTerm(fd, old)
			fmt.Fprintf(os.Stderr, "console of %s; Ctrl-] detaches\r\n", args[0])
		}
		done := make(chan error, 2)
		go func() {
			_, err := io.Copy(os.Stdout, c)
			done <- err
		}()
		go func() {
			buf := make([]byte, 1024)
			for {
				n, err := os.Stdin.Read(buf)
				if n > 0 {
					b := buf[:n]
					if i := bytes.IndexByte(b, detachKey); i >= 0 {
						c.Write(b[:i])
						done <- nil
						return
					}
					if _, err := c.Write(b); err != nil {
						done <- err
						return
					}
				}
				if err != nil {
					// End of input (a pipe): keep showing output until the
					// guest side closes.
					return
				}
			}
		}()
		<-done
		fmt.Fprint(os.Stderr, "\r\n")
		return nil
	},
}

func makeRaw(fd int) (*syscall.Termios, error) {
	var old syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&old))); e != 0 {
		return nil, e
	}
	raw := old
	raw.Iflag &^= syscall.IGNBRK | syscall.BRKINT | syscall.PARMRK | syscall.ISTRIP | syscall.INLCR | syscall.IGNCR | syscall.ICRNL | syscall.IXON
	raw.Oflag &^= syscall.OPOST
	raw.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
	raw.Cflag &^= syscall.CSIZE | syscall.PARENB
	raw.Cflag |= syscall.CS8
	raw.Cc[syscall.VMIN], raw.Cc[syscall.VTIME] = 1, 0
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCSETS, uintptr(unsafe.Pointer(&raw))); e != 0 {
		return nil, e
	}
	return &old, nil
}

func restoreTerm(fd int, t *syscall.Termios) {
	syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCSETS, uintptr(unsafe.Pointer(t)))
}

func init() {
	rootCmd.AddCommand(consoleCmd)
}
