package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"cloonix/internal/config"
	"cloonix/internal/graph"
	"cloonix/internal/proto"
)

// graphOptions are graph's flags.
type graphOptions struct {
	listen, passwordFile, tlsCert, tlsKey string
}

func newGraphCmd() *cobra.Command {
	var o graphOptions
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "serve the live topology page (default http://127.0.0.1:8080/)",
		Long: `graph serves a web page that draws the running lab and edits it: add and delete
VMs, lans and tux, drag an eth onto a lan to attach it, open consoles. It is a
client of the switch like ctrl.

On loopback it prints a one-time URL: the browser that opens it gets the
session (an HttpOnly cookie); nobody else who reaches the port gets the page.
--listen on another address requires a password (--password-file FILE, or
CLOONIX_GRAPH_PASSWORD in the environment; never on the command line) and
serves HTTPS, with --tls-cert/--tls-key or a self-signed certificate made at
first use in ~/.config/cloonix (its SHA-256 is printed). See docs/security.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := graph.ReadPassword(o.passwordFile, "CLOONIX_GRAPH_PASSWORD")
			if err != nil {
				return err
			}
			loop := graph.IsLoopback(o.listen)
			if !loop && password == "" {
				return fmt.Errorf("--listen %s is not a loopback address: give --password-file FILE or CLOONIX_GRAPH_PASSWORD (anyone who can reach it could change the lab)", o.listen)
			}
			if (o.tlsCert == "") != (o.tlsKey == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			var cert *tls.Certificate
			switch {
			case o.tlsCert != "":
				cert, err = graph.LoadCert(o.tlsCert, o.tlsKey)
			case !loop:
				// The password must not cross the network in clear.
				cert, err = graph.SelfSigned(filepath.Dir(config.DefaultPath()))
			}
			if err != nil {
				return err
			}
			// Check the switch answers before serving, for one clear error.
			c, err := connect()
			if err != nil {
				return err
			}
			c.Close()
			srv := graph.New(graph.Options{
				Dial: func() (graph.Switch, error) {
					c, err := connect()
					if err != nil {
						return nil, err
					}
					return c, nil
				},
				Password: password,
				Loopback: loop,
				Console:  graphConsole,
			})
			ln, err := net.Listen("tcp", o.listen)
			if err != nil {
				return fmt.Errorf("graph: listen on %s: %v (another graph running? use --listen 127.0.0.1:PORT)", o.listen, err)
			}
			unregister := registerGraphPort(ln.Addr())
			defer unregister()
			stop := make(chan struct{})
			go srv.Run(stop)
			hs := graph.HTTPServer(srv, cert, log.New(os.Stderr, "graph: ", 0))
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			go func() {
				<-sig
				close(stop)
				hs.Close()
			}()
			host := ln.Addr().String()
			if loop {
				// Browsers resolve "localhost"; the server accepts it too.
				_, port, _ := net.SplitHostPort(host)
				if h, _, _ := net.SplitHostPort(o.listen); h == "localhost" {
					host = net.JoinHostPort("localhost", port)
				}
			}
			scheme, path := "http", srv.LoginPath()
			if cert != nil {
				scheme = "https"
				fmt.Fprintf(os.Stderr, "graph: certificate SHA-256 %s\n", graph.Fingerprint(cert))
			}
			if password != "" {
				path = "/" // the password is the proof; the page asks for it
			}
			fmt.Printf("%s://%s%s\n", scheme, host, path)
			if cert != nil {
				err = hs.ServeTLS(ln, "", "")
			} else {
				err = hs.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve the page on (HOST:PORT; port 0 picks a free one)")
	f.StringVar(&o.passwordFile, "password-file", "", "file whose first line is the password the page asks for (required when --listen is not loopback, unless CLOONIX_GRAPH_PASSWORD is set)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for HTTPS (default beyond loopback: a self-signed one made at first use)")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	return cmd
}

// registerGraphPort records the page's port among the lab's listeners, so
// the slirp gateway refuses guests the way to it (docs/security.md). A
// graph for a remote switch registers nothing: no guest's gateway leads to
// this host.
func registerGraphPort(a net.Addr) func() {
	cfg, err := loadConfig()
	ta, ok := a.(*net.TCPAddr)
	if err != nil || !ok {
		return func() {}
	}
	return proto.RegisterListener(cfg.ListenersDir(), "graph", ta.Port)
}

func init() {
	rootCmd.AddCommand(newGraphCmd())
}
