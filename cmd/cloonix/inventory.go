package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"cloonix/internal/inventory"
)

var inventoryFormat string

var inventoryCmd = &cobra.Command{
	Use:   "inventory",
	Short: "print the lab's guests for Ansible, Nornir or ssh (management addresses)",
	Long: `inventory prints every guest that has a management address (mgmt0, see <mgmt> in the
config) with user root and the private key beside the config's <rsa_public_key>:
  --format ansible      a YAML inventory, groups type_KIND and image_IMAGE
  --format nornir       a Nornir SimpleInventory hosts file
  --format ssh-config   an ssh_config: ssh -F <(cloonix inventory --format ssh-config) NAME
  --format json         {"hosts":[{"name","address","type","image","state","user","key"}]}`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfig()
		if err != nil {
			return err
		}
		c, err := connect()
		if err != nil {
			return err
		}
		defer c.Close()
		lab, err := c.List()
		if err != nil {
			return err
		}
		if lab.Mgmt == nil {
			return fmt.Errorf("the management network is off (<mgmt>off</mgmt> in %s): guests have no address the host reaches; remove it and restart the switch", cfg.Path)
		}
		key := strings.TrimSuffix(cfg.RSAPublicKey, ".pub")
		if _, err := os.Stat(key); err != nil {
			fmt.Fprintf(os.Stderr, "cloonix: warning: private key %s: %v (the guests trust %s)\n", key, err, cfg.RSAPublicKey)
		}
		return inventory.Write(os.Stdout, inventoryFormat, inventory.Hosts(lab, key))
	},
}

func init() {
	inventoryCmd.Flags().StringVar(&inventoryFormat, "format", "ansible", "ansible, nornir, ssh-config or json")
	rootCmd.AddCommand(inventoryCmd)
}
