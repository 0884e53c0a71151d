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

	"cloonix/internal/api"
	"cloonix/internal/graph"
)

func newAPICmd() *cobra.Command {
	var listen, cert, key string
	var maxBody int64
	cmd := &cobra.Command{
		Use:   "api",
		Short: "serve the JSON API /api/v1/... (bearer token in work_dir/api.token)",
		Long: `api serves the switch's verbs as JSON over HTTP (docs/automation.md): GET /api/v1/lab,
POST /api/v1/lans, DELETE /api/v1/lans/NAME, POST /api/v1/attach|detach, POST /api/v1/vms,
DELETE /api/v1/vms/NAME, POST /api/v1/vms/NAME/exec, /api/v1/tux, /api/v1/impairments,
GET /api/v1/events (server-sent events) and GET /api/v1/openapi.json. Every request needs
"Authorization: Bearer TOKEN", the token kept in work_dir/api.token (0600), whose path it
prints. It listens on loopback unless --listen names another address, which needs TLS
(--tls-cert and --tls-key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			loop := graph.IsLoopback(listen)
			if !loop && (cert == "" || key == "") {
				return fmt.Errorf("--listen %s is not a loopback address: give --tls-cert and --tls-key (the token must not cross a network in clear)", listen)
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			c, err := connect() // one clear error before serving
			if err != nil {
				return err
			}
			c.Close()
			path, token, err := api.LoadToken(cfg.WorkDir)
			if err != nil {
				return err
			}
			srv, err := api.New(api.Options{Token: token, MaxBody: maxBody, Dial: func() (api.Switch, error) { return connect() }})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("api: listen on %s: %v (use --listen 127.0.0.1:PORT)", listen, err)
			}
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(os.Stderr, "api: ", 0)}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			go func() {
				<-sig
				hs.Close()
			}()
			scheme := "http"
			if cert != "" {
				scheme = "https"
			}
			fmt.Printf("%s://%s/api/v1/\ntoken %s\n", scheme, ln.Addr(), path)
			if cert != "" {
				err = hs.ServeTLS(ln, cert, key)
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
	f.StringVar(&listen, "listen", "127.0.0.1:8181", "address to serve on (HOST:PORT; port 0 picks a free one)")
	f.StringVar(&cert, "tls-cert", "", "TLS certificate (PEM), required beyond loopback")
	f.StringVar(&key, "tls-key", "", "TLS private key (PEM)")
	f.Int64Var(&maxBody, "max-body", api.DefaultMaxBody, "largest request body in bytes")
	return cmd
}

func init() {
	rootCmd.AddCommand(newAPICmd())
}
