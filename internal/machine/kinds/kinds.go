// Package kinds is the explicit list of node kinds the switch offers
// (containerlab's nodes/node_registry.go shape, no init() side effects).
// It is a package of its own because kinds in their own folders (cnt)
// import machine, so machine cannot list them.
package kinds

import (
	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
)

// All is every node kind, the default (add_vm without a type) first.
// Adding a kind is adding its file or folder and a line here.
func All() *machine.Registry {
	return machine.NewRegistry(
		machine.QEMUKind{},
		machine.UMLKind{},
		cnt.Kind{},
	)
}
