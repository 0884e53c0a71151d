package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
)

// execOptions are exec's flags.
type execOptions struct {
	stdin   bool
	timeout int
}

func newExecCmd() *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec VM -- CMD [ARG...]",
		Short: "run CMD in a guest through its agent; prints its output and exits with its code",
		Long: `run CMD in guest VM through its agent (a serial line: no guest network needed).
CMD's stdout and stderr are printed as they came and cloonix exits with CMD's exit code.
With --stdin, cloonix's standard input is sent to CMD. A guest still booting is waited for.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d := cmd.ArgsLenAtDash(); d != 1 && d != -1 {
				return fmt.Errorf("usage: cloonix exec VM -- CMD [ARG...]")
			}
			// With interspersed flags off, pflag keeps the "--" after VM.
			if args[1] == "--" {
				args = append(args[:1], args[2:]...)
				if len(args) < 2 {
					return fmt.Errorf("usage: cloonix exec VM -- CMD [ARG...]")
				}
			}
			req := &proto.Exec{Name: args[0], Args: args[1:]}
			if o.stdin {
				in, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				req.Stdin = base64.StdEncoding.EncodeToString(in)
			}
			if o.timeout > 0 {
				req.Timeout = proto.Int(o.timeout)
			}
			var res proto.ExecReply
			if err := do(req, &res); err != nil {
				return err
			}
			out, err1 := base64.StdEncoding.DecodeString(res.Stdout)
			errb, err2 := base64.StdEncoding.DecodeString(res.Stderr)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("exec: bad output encoding from the switch")
			}
			os.Stdout.Write(out)
			os.Stderr.Write(errb)
			if res.Truncated {
				fmt.Fprintln(os.Stderr, "cloonix: exec output was longer than 1 MiB per stream and was cut")
			}
			if res.Code != 0 {
				os.Exit(res.Code & 0xff)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.stdin, "stdin", "i", false, "send standard input to the command")
	f.IntVar(&o.timeout, "timeout", 0, "kill the command after this many seconds (0: no limit)")
	f.SetInterspersed(false)
	return cmd
}

func init() {
	rootCmd.AddCommand(newExecCmd())
}
