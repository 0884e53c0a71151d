package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/graph"
)

// graphOptions are graph's flags.
type graphOptions struct {
	listen, password string
}

func newGraphCmd() *cobra.Command {
	var o graphOptions
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "serve the live topology page (default http://127.0.0.1:8080/)",
		Long: `graph serves a web page that draws the running lab and edits it: add and delete
VMs, lans and tux, drag an eth onto a lan to attach it, open consoles. It is a
client of the switch like ctrl. It listens on loopback unless --listen names
another address, which then requires --password (or CLOONIX_GRAPH_PASSWORD).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.password == "" {
				o.password = os.Getenv("CLOONIX_GRAPH_PASSWORD")
			}
			loop := graph.IsLoopback(o.listen)
			if !loop && o.password == "" {
				return fmt.Errorf("--listen %s is not a loopback address: give --password (anyone who can reach it could change the lab)", o.listen)
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
				Password: o.password,
				Loopback: loop,
				Console:  graphConsole,
			})
			ln, err := net.Listen("tcp", o.listen)
			if err != nil {
				return fmt.Errorf("graph: listen on %s: %v (another graph running? use --listen 127.0.0.1:PORT)", o.listen, err)
			}
			stop := make(chan struct{})
			go srv.Run(stop)
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(os.Stderr, "graph: ", 0)}
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
			fmt.Printf("http://%s/\n", host)
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve the page on (HOST:PORT; port 0 picks a free one)")
	f.StringVar(&o.password, "password", "", "password asked by the page (required when --listen is not loopback)")
	return cmd
}

func init() {
	rootCmd.AddCommand(newGraphCmd())
}
