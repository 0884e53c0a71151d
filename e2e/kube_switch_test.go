package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloonix/internal/kube"
	"cloonix/internal/machine"
)

// TestKubeSwitchAgent runs the switch DaemonSet's agent (kube.Switch with
// the real netlink plumbing) against a real cloonix switch, without a
// cluster: each "pod" is a network namespace holding a process in a
// cgroup named pod<UID> (as the kubelet makes them) and a veth eth0 (as a
// network plugin makes it); the API is a fixed reply. The agent must
// rename the plugin's eth0, put each eth in place with its MAC and lans,
// and the lan rule must hold between the pods.
func TestKubeSwitchAgent(t *testing.T) {
	needE2E(t)
	l := NewLab(t, "<no_nat>true</no_nat><mgmt>off</mgmt>")
	sfx := tuxSuffix()
	cg := "/sys/fs/cgroup/pids/clxkube" + sfx
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("needs the cgroup v1 pids hierarchy: %v", err)
	}
	t.Cleanup(func() { os.Remove(cg) })

	type fakePod struct{ node, uid, ns, ip string }
	pods := []fakePod{{"A", "uid-a-" + sfx, "clxka" + sfx, "10.9.0.1"}, {"B", "uid-b-" + sfx, "clxkb" + sfx, "10.9.0.2"},
		{"C", "uid-c-" + sfx, "clxkc" + sfx, "10.9.0.3"}}
	for _, p := range pods {
		tuxNetns(t, p.ns)
		// The network plugin's interface, to be renamed k8s0.
		sh(t, fmt.Sprintf("ip link add clxv%s type veth peer name eth0 netns %s", p.ns[4:], p.ns))
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "clxv"+p.ns[4:]).Run() })
		dir := filepath.Join(cg, "pod"+p.uid)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", p.ns, "sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); os.Remove(dir) })
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	lab := kube.Lab{Metadata: kube.Meta{Name: "lab"}, Status: kube.LabStatus{VNIs: map[string]int{"one": 1, "two": 2}}}
	lans := map[string][]string{"A": {"one"}, "B": {"one", "two"}, "C": {"two"}}
	var items []kube.Pod
	for _, p := range pods {
		lab.Spec.Nodes = append(lab.Spec.Nodes, kube.LabNode{Name: p.node,
			Eths: []kube.LabEth{{MAC: machine.MAC(p.node, 0), Lans: lans[p.node]}}})
		var kp kube.Pod
		kp.Metadata = kube.Meta{Name: "lab-" + strings.ToLower(p.node), UID: p.uid,
			Labels: map[string]string{kube.LabelLab: "lab", kube.LabelNode: p.node}}
		kp.Spec.NodeName = "n1"
		kp.Status.Phase = "Running"
		items = append(items, kp)
	}
	objs := map[string]any{
		"/apis/cloonix.io/v1alpha1/namespaces/ns/labs": map[string]any{"items": []kube.Lab{lab}},
		"/api/v1/namespaces/ns/pods":                   map[string]any{"items": items},
		"/api/v1/nodes":                                map[string]any{"items": []any{}},
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(objs[r.URL.Path])
	}))
	defer api.Close()

	var log strings.Builder
	s := &kube.Switch{K: kube.NewClientFor(api.URL, api.Client()), NS: "ns", Node: "n1",
		SW: l.Client(), Net: kube.Netlink{}, Log: &log}
	if err := s.Sync(); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, p := range pods {
		out := sh(t, "ip netns exec "+p.ns+" ip -o link show")
		if !strings.Contains(out, "k8s0") || !strings.Contains(out, machine.MAC(p.node, 0)) {
			t.Fatalf("pod %s after sync:\n%s\nagent:\n%s", p.node, out, log.String())
		}
		sh(t, fmt.Sprintf("ip netns exec %s ip addr add %s/24 dev eth0", p.ns, p.ip))
	}
	ping := func(from, to fakePod) error {
		out, err := exec.Command("ip", "netns", "exec", from.ns, "ping", "-c1", "-W1", to.ip).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s -> %s: %v %s", from.node, to.node, err, out)
		}
		return nil
	}
	a, b, c := pods[0], pods[1], pods[2]
	Eventually(t, 10*time.Second, "A pings B", func() error { return ping(a, b) })
	Eventually(t, 10*time.Second, "C pings B", func() error { return ping(c, b) })
	if ping(a, c) == nil {
		t.Fatal("A reaches C: they share no lan")
	}
	// A second round changes nothing; then A moves to lan two (apply).
	before := len(l.List().Tux)
	lab.Spec.Nodes[0].Eths[0].Lans = []string{"two"}
	objs["/apis/cloonix.io/v1alpha1/namespaces/ns/labs"] = map[string]any{"items": []kube.Lab{lab}}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if after := len(l.List().Tux); after != before {
		t.Fatalf("apply made or removed tux (%d -> %d):\n%s", before, after, log.String())
	}
	Eventually(t, 10*time.Second, "A pings C after moving to lan two", func() error { return ping(a, c) })
}
