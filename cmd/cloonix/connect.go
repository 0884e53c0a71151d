package main

import (
	"os"
	"strings"

	"cloonix/internal/config"
	"cloonix/internal/proto"
)

// loadConfig reads -c (or the default), without creating it.
func loadConfig() (*config.Config, error) {
	return config.Load(rootOpts.config, false)
}

// connect dials the switch named by --server or the config.
func connect() (*proto.Client, error) {
	if rootOpts.server != "" {
		pw := os.Getenv("CLOONIX_PASSWORD")
		if pw == "" && strings.HasPrefix(rootOpts.server, "tcp:") {
			if cfg, err := loadConfig(); err == nil {
				pw = cfg.Password
			}
		}
		return proto.Dial(rootOpts.server, pw)
	}
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	return proto.Dial("unix:"+cfg.ServerName, cfg.Password)
}

// withClient is connect, f with the client, close.
func withClient(f func(c *proto.Client) error) error {
	c, err := connect()
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

// do is connect + one typed request; reply (if not nil) gets its payload.
func do(req proto.Request, reply any) error {
	return withClient(func(c *proto.Client) error { return c.Do(req, reply) })
}

// listLab is connect + list.
func listLab() (lab *proto.Lab, err error) {
	err = withClient(func(c *proto.Client) error {
		lab, err = c.List()
		return err
	})
	return lab, err
}

// checkSwitch tells whether the switch answers: a server checks it
// before serving, for one clear error.
func checkSwitch() error { return withClient(func(*proto.Client) error { return nil }) }
