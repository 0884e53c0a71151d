package guest

import (
	"reflect"
	"testing"
)

func TestEthNames(t *testing.T) {
	tests := []struct {
		name string
		devs map[string]string
		mgmt string
		want map[string]string
	}{
		{"uml vector", map[string]string{"vec0": "", "vec1": "", "vec2": ""}, "", map[string]string{"vec0": "eth0", "vec1": "eth1", "vec2": "eth2"}},
		{"qemu in slot order", map[string]string{
			"eth0":   "/sys/devices/pci0000:00/0000:00:05.0/virtio2",
			"eth1":   "/sys/devices/pci0000:00/0000:00:03.0/virtio0",
			"enp0s4": "/sys/devices/pci0000:00/0000:00:04.0",
		}, "", map[string]string{"eth1": "eth0", "enp0s4": "eth1", "eth0": "eth2"}},
		{"virtual devices left alone", map[string]string{"dummy0": "", "eth0": "/sys/devices/pci0000:00/0000:00:03.0/virtio0"}, "", map[string]string{"eth0": "eth0"}},
		{"uml daemon eths", map[string]string{"eth0": "", "eth1": ""}, "", map[string]string{}},
		{"uml vector with mgmt last", map[string]string{"vec0": "", "vec1": "", "vec2": ""}, "vec2", map[string]string{"vec0": "eth0", "vec1": "eth1", "vec2": "mgmt0"}},
		{"uml daemon with mgmt", map[string]string{"eth0": "", "eth1": ""}, "eth1", map[string]string{"eth1": "mgmt0"}},
		{"qemu mgmt not counted", map[string]string{
			"eth0": "/sys/devices/pci0000:00/0000:00:03.0/virtio0",
			"eth1": "/sys/devices/pci0000:00/0000:00:04.0/virtio1",
			"eth2": "/sys/devices/pci0000:00/0000:00:05.0/virtio2",
		}, "eth1", map[string]string{"eth0": "eth0", "eth1": "mgmt0", "eth2": "eth1"}},
	}
	for _, tc := range tests {
		if got := ethNames(tc.devs, tc.mgmt); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
