package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
)

// captureOptions are capture's flags.
type captureOptions struct {
	file          string
	count, queue  int
	duration      time.Duration
	isPort, isLan bool
}

func newCaptureCmd() *cobra.Command {
	var o captureOptions
	cmd := &cobra.Command{
		Use:   "capture LAN|PORT -w FILE|-",
		Short: "capture a lan's or a port's frames as pcapng (-w - streams to stdout, e.g. into wireshark -k -i -)",
		Long: `Capture the frames of a lan (each frame once, as it enters the lan) or of a port
(both directions as its peer sees them: interface PORT-in for frames from the peer,
PORT-out for frames to it) and write them as pcapng. With -w - the capture streams
to stdout, so

    cloonix capture lan_one -w - | wireshark -k -i -

shows the lan live. The capture ends with --count, --duration or Ctrl-C; a busy lan is
never slowed by it: frames the capture cannot keep up with are dropped from the capture
and reported at the end (and in the file's interface statistics).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(args) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "write", "w", "", "pcapng file to write, or - for stdout")
	f.IntVar(&o.count, "count", 0, "stop after N frames (0: no limit)")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long, e.g. 10s (0: no limit)")
	f.IntVar(&o.queue, "queue", 0, "frames the switch holds for a slow reader before dropping from the capture (default 4096)")
	f.BoolVar(&o.isPort, "port", false, "the name is a port (when a lan has the same name)")
	f.BoolVar(&o.isLan, "lan", false, "the name is a lan (when a port has the same name)")
	return cmd
}

// serverAndPassword is what connect uses: --server or the config.
func serverAndPassword() (string, string, error) {
	if rootOpts.server != "" {
		pw := os.Getenv("CLOONIX_PASSWORD")
		if pw == "" && strings.HasPrefix(rootOpts.server, "tcp:") {
			if cfg, err := loadConfig(); err == nil {
				pw = cfg.Password
			}
		}
		return rootOpts.server, pw, nil
	}
	cfg, err := loadConfig()
	if err != nil {
		return "", "", err
	}
	return "unix:" + cfg.ServerName, cfg.Password, nil
}

// run captures what args names into o.file.
func (o *captureOptions) run(args []string) error {
	if o.file == "" {
		return errors.New("capture: give -w FILE, or -w - for stdout")
	}
	req := &proto.Capture{}
	switch {
	case o.isPort && o.isLan:
		return errors.New("capture: --port and --lan exclude each other")
	case o.isPort:
		req.Port = args[0]
	case o.isLan:
		req.Lan = args[0]
	default:
		req.Name = args[0]
	}
	if o.count < 0 || o.duration < 0 {
		return errors.New("capture: --count and --duration cannot be negative")
	}
	if o.count > 0 {
		req.Count = proto.Int(o.count)
	}
	if o.duration > 0 {
		req.Duration = o.duration.String()
	}
	if o.queue > 0 {
		req.Queue = proto.Int(o.queue)
	}
	server, pw, err := serverAndPassword()
	if err != nil {
		return err
	}
	var out io.Writer = os.Stdout
	if o.file != "-" {
		f, err := os.Create(o.file)
		if err != nil {
			return fmt.Errorf("capture: %v", err)
		}
		defer f.Close()
		out = f
	}
	s, err := proto.DialCapture(server, pw, req)
	if err != nil {
		return err
	}
	defer s.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		// Ask the switch to finish: it sends what it holds and
		// the summary. A second signal leaves at once.
		_ = s.Stop()
		<-sig
		os.Exit(130)
	}()
	_, err = io.Copy(out, s)
	if err != nil {
		return fmt.Errorf("capture %s: %v", args[0], err)
	}
	if f, ok := out.(*os.File); ok && f != os.Stdout {
		if err := f.Close(); err != nil {
			return fmt.Errorf("capture: %s: %v", o.file, err)
		}
	}
	if e := s.End(); e != nil {
		msg := fmt.Sprintf("capture %s: %d frames", args[0], e.Frames)
		if o.file != "-" {
			msg += " to " + o.file
		}
		msg += fmt.Sprintf(", %d dropped by the capture (%s)", e.Dropped, e.Reason)
		fmt.Fprintln(os.Stderr, msg)
		if strings.HasPrefix(e.Reason, "port ") {
			return errors.New(e.Reason)
		}
	}
	return nil
}

func init() {
	rootCmd.AddCommand(newCaptureCmd())
}
