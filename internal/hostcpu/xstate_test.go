package hostcpu

import "testing"

func TestXstateSize(t *testing.T) {
	n, err := XstateSize()
	if err != nil {
		t.Fatal(err)
	}
	// x86-64 xstate holds at least the legacy FXSAVE area and its header.
	if n < 576 || n > 1<<16 {
		t.Fatalf("xstate size %d is implausible", n)
	}
}
