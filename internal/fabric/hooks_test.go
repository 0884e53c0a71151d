package fabric

import (
	"fmt"
	"reflect"
	"testing"
)

// TestMemberAndLanHooks: every change of membership and every lan that
// comes or goes is reported by the hooks, in order, whoever caused it
// (attach, detach, deleting a port, deleting a lan).
func TestMemberAndLanHooks(t *testing.T) {
	f := New()
	defer f.Close()
	var got []string
	f.OnLan = func(lan string, up bool) { got = append(got, fmt.Sprintf("lan %s %v", lan, up)) }
	f.OnMember = func(port, lan string, on bool) { got = append(got, fmt.Sprintf("member %s %s %v", port, lan, on)) }
	for _, p := range []string{"A", "B"} {
		if _, err := f.AddPort(p, "mem"); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		do   func() error
		want []string
	}{
		{func() error { return f.AddLan("x") }, []string{"lan x true"}},
		{func() error { return f.AddLan("x") }, nil}, // refused: nothing reported
		{func() error { return f.Attach("A", "y") }, []string{"lan y true", "member A y true"}},
		{func() error { return f.Attach("A", "y") }, nil},
		{func() error { return f.Attach("B", "y") }, []string{"member B y true"}},
		{func() error { return f.Detach("B", "y") }, []string{"member B y false"}},
		{func() error { return f.Attach("A", "x") }, []string{"member A x true"}},
		{func() error { return f.DelPort("A") }, []string{"member A y false", "lan y false", "member A x false"}},
		{func() error { return f.Attach("B", "x") }, []string{"member B x true"}},
		{func() error { return f.DelLan("x") }, []string{"member B x false", "lan x false"}},
	}
	for i, s := range steps {
		got = nil
		_ = s.do()
		if !reflect.DeepEqual(got, s.want) {
			t.Errorf("step %d: %q, want %q", i, got, s.want)
		}
	}
}
