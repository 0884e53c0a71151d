package kinds

import "testing"

func TestAll(t *testing.T) {
	r := All()
	for typ, want := range map[string]string{"": "kvm", "qemu": "kvm", "uml": "uml", "CNT": "cnt"} {
		if k, err := r.Lookup(typ); err != nil || k.Name() != want {
			t.Errorf("Lookup(%q) = %v, %v; want %s", typ, k, err, want)
		}
	}
	if _, err := r.Lookup("xen"); err == nil {
		t.Error("Lookup(xen) found a kind")
	}
}
