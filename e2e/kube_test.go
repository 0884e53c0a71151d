package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"cloonix/internal/kube"
	"cloonix/internal/machine"
)

// The Kubernetes tests run on the 2-node test bed (make k8s-testbed) with
// the images imported on its nodes: `make test-k8s` does all of it and
// sets CLOONIX_K8S=1 and KUBECONFIG.
func needK8s(t *testing.T) *kube.Client {
	t.Helper()
	needE2E(t)
	if os.Getenv("CLOONIX_K8S") == "" {
		t.Skip("Kubernetes test: run make test-k8s (starts the test bed, sets CLOONIX_K8S=1)")
	}
	k, err := kube.NewClient(kube.KubeconfigPath(""))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func kubeRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"kube"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func kubeMust(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubeRun(t, args...)
	if err != nil {
		t.Fatalf("cloonix kube %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestKubeLanRule: the seed's lan rule across two Kubernetes nodes, a
// live apply, a deleted pod that comes back wired, and a destroy that
// leaves nothing.
func TestKubeLanRule(t *testing.T) {
	k := needK8s(t)
	const lab = "e2e-lan-rule"
	n1, n2 := "kubetb-n1", "kubetb-n2"
	t.Cleanup(func() {
		if t.Failed() {
			logSwitches(t, k)
		}
		kubeRun(t, "destroy", lab)
	})
	kubeMust(t, "deploy", "testdata/kube_lan_rule", "--name", lab,
		"--pin", "A="+n1, "--pin", "C="+n1, "--pin", "B="+n2) // D: <k8s_node> in the file

	ips := map[string]string{"A": "10.0.0.1", "B": "10.0.0.2", "C": "10.0.0.3", "D": "10.0.0.4"}
	for _, n := range []string{"A", "B", "C", "D"} {
		kubeWired(t, lab, n, ips[n])
	}
	demoFiles(t, lab)
	var l kube.Listing
	if err := json.Unmarshal([]byte(kubeMust(t, "list", lab, "--json")), &l); err != nil {
		t.Fatal(err)
	}
	on := map[string]string{}
	for _, v := range l.VMs {
		on[v.Name] = v.K8sNode
		if v.State != "running" {
			t.Errorf("%s: state %s", v.Name, v.State)
		}
	}
	if on["A"] != n1 || on["C"] != n1 || on["B"] != n2 || on["D"] != n2 {
		t.Fatalf("pods not where pinned: %v", on)
	}
	ping := func(from, to string) error { return kubePing(t, lab, from, ips[to]) }
	mustPing := func(from, to string) {
		t.Helper()
		Eventually(t, 30*time.Second, "ping "+from+" -> "+to, func() error { return ping(from, to) })
	}
	mustPing("A", "B") // lan_one, across nodes
	mustPing("B", "D") // lan_two, across nodes
	mustPing("C", "B")
	mustPing("C", "D")
	if ping("A", "C") == nil {
		t.Fatal("A reaches C: they share no lan")
	}

	// Live apply: A's eth0 moves to lan_two, its pod stays.
	before := podUID(t, k, lab, "A")
	kubeMust(t, "apply", "testdata/kube_lan_rule_moved.topology", "--name", lab)
	mustPing("A", "C")
	mustPing("A", "D")
	if ping("A", "B") != nil {
		// B is on both lans: still reachable. A failure here is a real one.
		t.Fatal("A lost B after moving to lan_two (B is on lan_two too)")
	}
	if after := podUID(t, k, lab, "A"); after != before {
		t.Fatalf("apply restarted A's pod (uid %s -> %s)", before, after)
	}

	kubeHeal(t, k, lab, ips, n2, mustPing)
	kubeSwitchRestart(t, k, lab, ips, n2, mustPing)
	kubeDestroyed(t, k, lab)
}

// kubeHeal: node D's deleted pod comes back on n2, wired again, and the
// lab's events say it was created twice.
func kubeHeal(t *testing.T, k *kube.Client, lab string, ips map[string]string, n2 string, mustPing func(from, to string)) {
	// Heal: a deleted pod comes back, wired again.
	old := podUID(t, k, lab, "D")
	if err := k.Delete("/api/v1/namespaces/default/pods/" + kube.PodName(lab, "D")); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, "D's pod recreated", func() error {
		if uid := podUID(t, k, lab, "D"); uid == "" || uid == old {
			return fmt.Errorf("uid %q", uid)
		}
		return nil
	})
	kubeWired(t, lab, "D", ips["D"])
	if pods, err := k.ListPods("default", map[string]string{kube.LabelLab: lab, kube.LabelNode: "D"}); err != nil || len(pods) != 1 || pods[0].Spec.NodeName != n2 {
		t.Fatalf("D's new pod is not on %s, where it was pinned at deploy (apply keeps pins): %+v %v", n2, pods, err)
	}
	mustPing("C", "D")
	mustPing("A", "D")
	var evs struct {
		Items []struct{ Reason, Message string }
	}
	if err := k.Get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D"+lab, &evs); err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, e := range evs.Items {
		if e.Reason == "CreatingPod" && strings.HasPrefix(e.Message, "node D:") {
			created++
		}
	}
	if created < 2 {
		t.Errorf("events on the lab: want D's pod created twice, got %+v", evs.Items)
	}
}

// kubeSwitchRestart: a switch pod that restarts re-plumbs its node's
// pods.
func kubeSwitchRestart(t *testing.T, k *kube.Client, lab string, ips map[string]string, n2 string, mustPing func(from, to string)) {
	// A switch pod that restarts re-plumbs its node's pods: its taps went
	// with it, so the pods' eths come back (new taps, same names and MACs).
	var sw struct{ Items []kube.Pod }
	if err := k.Get("/api/v1/namespaces/default/pods?labelSelector="+kube.LabelRole+"%3Dswitch", &sw); err != nil {
		t.Fatal(err)
	}
	for _, p := range sw.Items {
		if p.Spec.NodeName == n2 {
			if err := k.Delete("/api/v1/namespaces/default/pods/" + p.Metadata.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range []string{"B", "D"} {
		Eventually(t, 2*time.Minute, n+": a new eth0 after the switch restarted", func() error {
			mac, err := kubeRun(t, "exec", lab, n, "--", "cat", "/sys/class/net/eth0/address")
			if err != nil || strings.TrimSpace(mac) != machine.MAC(n, 0) {
				return fmt.Errorf("eth0: %v %s", err, mac)
			}
			addr, err := kubeRun(t, "exec", lab, n, "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
			if err != nil || strings.Contains(addr, ips[n]+"/") {
				return fmt.Errorf("still the old eth0: %v %s", err, addr)
			}
			return nil
		})
		kubeMust(t, "exec", lab, n, "--", "ip", "addr", "add", ips[n]+"/24", "dev", "eth0")
	}
	mustPing("A", "D")
	mustPing("C", "B")
}

// kubeDestroyed destroys the lab: its pods and cloonix's cluster objects
// are gone.
func kubeDestroyed(t *testing.T, k *kube.Client, lab string) {
	kubeMust(t, "destroy", lab)
	pods, err := k.ListPods("default", map[string]string{kube.LabelLab: lab})
	if err != nil || len(pods) > 0 {
		t.Fatalf("after destroy: pods %v, %v", pods, err)
	}
	var cl struct{ Items []kube.Pod }
	if err := k.Get("/api/v1/namespaces/default/pods?labelSelector="+kube.LabelRole, &cl); err != nil || len(cl.Items) > 0 {
		t.Fatalf("after destroy: switch/controller pods %v, %v", cl.Items, err)
	}
	for _, p := range []string{
		"/apis/apps/v1/namespaces/default/daemonsets/cloonix-switch",
		"/apis/apps/v1/namespaces/default/deployments/cloonix-controller",
		"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/labs.cloonix.io",
		"/apis/rbac.authorization.k8s.io/v1/clusterroles/cloonix",
	} {
		if err := k.Get(p, nil); !kube.IsNotFound(err) {
			t.Errorf("after destroy: %s still there (%v)", p, err)
		}
	}
}

func podUID(t *testing.T, k *kube.Client, lab, node string) string {
	t.Helper()
	pods, err := k.ListPods("default", map[string]string{kube.LabelLab: lab, kube.LabelNode: node})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Metadata.DeletionTimestamp == nil && p.Status.Phase == "Running" {
			return p.Metadata.UID
		}
	}
	return ""
}

// logSwitches logs the tail of each switch pod's log (what it plumbed).
func logSwitches(t *testing.T, k *kube.Client) {
	var sw struct{ Items []kube.Pod }
	if err := k.Get("/api/v1/namespaces/default/pods?labelSelector="+kube.LabelRole, &sw); err != nil {
		t.Logf("switch pods: %v", err)
		return
	}
	for _, p := range sw.Items {
		var out []byte
		path := "/api/v1/namespaces/default/pods/" + p.Metadata.Name + "/log?tailLines=40"
		if err := k.Do("GET", path, "", nil, &out); err != nil {
			t.Logf("%s log: %v", p.Metadata.Name, err)
			continue
		}
		t.Logf("%s on %s:\n%s", p.Metadata.Name, p.Spec.NodeName, out)
	}
}

// demoFiles: the demo folder applies to pods as to local cnt nodes: every
// node ran the delete commands and has files_to_add_in_all_targets; A's
// rc.d script (files_to_add_in_A) ran once eth0 was the lab's.
func demoFiles(t *testing.T, lab string) {
	t.Helper()
	cat := func(node, file, want string) {
		t.Helper()
		Eventually(t, time.Minute, node+": "+file, func() error {
			out, err := kubeRun(t, "exec", lab, node, "--", "cat", file)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if got := strings.TrimSpace(out); got != want {
				return fmt.Errorf("%s is %q, want %q", file, got, want)
			}
			return nil
		})
	}
	for _, n := range []string{"A", "B", "C", "D"} {
		cat(n, "/etc/cloonix-demo", "from files_to_add_in_all_targets")
		cat(n, "/delete-ran", "ran")
	}
	cat("A", "/rc-eth0", machine.MAC("A", 0))
	if out, err := kubeRun(t, "exec", lab, "B", "--", "cat", "/rc-eth0"); err == nil {
		t.Fatalf("B ran A's rc.d script (files_to_add_in_A): /rc-eth0 is %q", out)
	}
}

// kubeWired waits until the switch has given node's pod its eth0 (its
// MAC) and gives it ip.
func kubeWired(t *testing.T, lab, node, ip string) {
	t.Helper()
	Eventually(t, 3*time.Minute, node+": eth0 with its MAC", func() error {
		out, err := kubeRun(t, "exec", lab, node, "--", "cat", "/sys/class/net/eth0/address")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if got := strings.TrimSpace(out); got != machine.MAC(node, 0) {
			return fmt.Errorf("eth0 is %s, want %s", got, machine.MAC(node, 0))
		}
		return nil
	})
	kubeMust(t, "exec", lab, node, "--", "ip", "addr", "add", ip+"/24", "dev", "eth0")
}

func kubePing(t *testing.T, lab, from, ip string) error {
	out, err := kubeRun(t, "exec", lab, from, "--", "ping", "-c1", "-W2", ip)
	if err != nil {
		return fmt.Errorf("%s -> %s: %v: %s", from, ip, err, out)
	}
	return nil
}

// labPod is the running (not terminating) pod of a lab node, if any.
func labPod(t *testing.T, k *kube.Client, lab, node string) (kube.Pod, bool) {
	t.Helper()
	pods, err := k.ListPods("default", map[string]string{kube.LabelLab: lab, kube.LabelNode: node})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Metadata.DeletionTimestamp == nil && p.Status.Phase == "Running" {
			return p, true
		}
	}
	return kube.Pod{}, false
}

// kubeTestbed runs scripts/k8s/testbed.sh.
func kubeTestbed(t *testing.T, args ...string) error {
	out, err := exec.Command("../scripts/k8s/testbed.sh", args...).CombinedOutput()
	t.Logf("testbed.sh %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	return err
}

func nodeReady(k *kube.Client, node string) error {
	var n struct {
		Status struct {
			Conditions []struct{ Type, Status string }
		}
	}
	if err := k.Get("/api/v1/nodes/"+node, &n); err != nil {
		return err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			return nil
		}
	}
	return fmt.Errorf("%s not Ready: %+v", node, n.Status.Conditions)
}

// TestKubeNodeLost: a Kubernetes node goes away (its kubelet, containerd
// and pods stop); the controller moves its unpinned lab node to the other
// node, wired again under the lan rule, keeps the pinned one waiting, and
// brings it back with its node; each step is an event on the Lab.
func TestKubeNodeLost(t *testing.T) {
	k := needK8s(t)
	const lab = "e2e-node-lost"
	n1, n2 := "kubetb-n1", "kubetb-n2"
	cordon := func(node string, on bool) error {
		return k.MergePatch("/api/v1/nodes/"+node, map[string]any{"spec": map[string]any{"unschedulable": on}})
	}
	stopped := false
	t.Cleanup(func() {
		if t.Failed() {
			logSwitches(t, k)
		}
		if err := cordon(n1, false); err != nil {
			t.Errorf("uncordon %s: %v", n1, err)
		}
		if stopped {
			if err := kubeTestbed(t, "node-start", n2); err != nil {
				t.Errorf("restarting %s: %v", n2, err)
			}
			Eventually(t, 2*time.Minute, n2+" Ready again", func() error { return nodeReady(k, n2) })
		}
		kubeRun(t, "destroy", lab)
	})
	// n1 cordoned at deploy: the free B (and the controller) start on n2.
	if err := cordon(n1, true); err != nil {
		t.Fatal(err)
	}
	kubeMust(t, "deploy", "testdata/kube_node_lost.topology", "--name", lab,
		"--pin", "A="+n1, "--pin", "D="+n1, "--pin", "C="+n2)
	Eventually(t, 2*time.Minute, "B running on "+n2, func() error {
		if p, ok := labPod(t, k, lab, "B"); !ok || p.Spec.NodeName != n2 {
			return fmt.Errorf("B's pod: %+v", p)
		}
		return nil
	})
	if err := cordon(n1, false); err != nil {
		t.Fatal(err)
	}
	ips := map[string]string{"A": "10.0.0.1", "B": "10.0.0.2", "C": "10.0.0.3", "D": "10.0.0.4"}
	for _, n := range []string{"A", "B", "C", "D"} {
		kubeWired(t, lab, n, ips[n])
	}
	mustPing := func(from, to string) {
		t.Helper()
		Eventually(t, 30*time.Second, "ping "+from+" -> "+to, func() error { return kubePing(t, lab, from, ips[to]) })
	}
	mustPing("B", "A") // lan_one across the nodes
	mustPing("C", "D") // lan_two across the nodes
	if kubePing(t, lab, "B", ips["D"]) == nil {
		t.Fatal("B reaches D: they share no lan")
	}
	oldB, _ := labPod(t, k, lab, "B")

	stopped = true
	if err := kubeTestbed(t, "node-stop", n2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	Eventually(t, 4*time.Minute, "B running again on "+n1, func() error {
		if p, ok := labPod(t, k, lab, "B"); !ok || p.Spec.NodeName != n1 || p.Metadata.UID == oldB.Metadata.UID {
			return fmt.Errorf("B's pod: %+v", p)
		}
		return nil
	})
	t.Logf("B running on %s %s after %s stopped", n1, time.Since(start).Round(time.Second), n2)
	kubeWired(t, lab, "B", ips["B"])
	mustPing("B", "A")
	if kubePing(t, lab, "B", ips["D"]) == nil {
		t.Fatal("B reaches D after its move: they share no lan")
	}
	kubeWaitingForNode(t, k, lab, n2)
	labEvents(t, k, lab, "NodeLost node B:", "Rescheduled node B:", "NodeLost node C:", "WaitingForNode node C:")

	if err := kubeTestbed(t, "node-start", n2); err != nil {
		t.Fatal(err)
	}
	stopped = false
	Eventually(t, 4*time.Minute, "C running again on "+n2, func() error {
		if p, ok := labPod(t, k, lab, "C"); !ok || p.Spec.NodeName != n2 {
			return fmt.Errorf("C's pod: %+v", p)
		}
		return nil
	})
	kubeWired(t, lab, "C", ips["C"])
	mustPing("C", "D") // lan_two spans the nodes again
	mustPing("B", "A")
	if kubePing(t, lab, "C", ips["A"]) == nil {
		t.Fatal("C reaches A: they share no lan")
	}
	labEvents(t, k, lab, "CreatingPod node C: Kubernetes node "+n2+" is back")
}

// kubeWaitingForNode: with n2 stopped, the lab is Degraded and C, pinned
// to n2, waits for it, in the Lab's status and in kube list.
func kubeWaitingForNode(t *testing.T, k *kube.Client, lab, n2 string) {
	Eventually(t, time.Minute, "lab Degraded, C waiting for "+n2, func() error {
		l, err := k.GetLab("default", lab)
		if err != nil {
			return err
		}
		for _, s := range l.Status.Nodes {
			if s.Name == "C" && s.Phase == kube.PhaseWaitingForNode && s.K8sNode == n2 && l.Status.Phase == kube.PhaseDegraded {
				return nil
			}
		}
		return fmt.Errorf("status %+v", l.Status)
	})
	var l kube.Listing
	if err := json.Unmarshal([]byte(kubeMust(t, "list", lab, "--json")), &l); err != nil {
		t.Fatal(err)
	}
	for _, v := range l.VMs {
		if v.Name == "C" && (v.State != "waiting" || v.K8sNode != n2) {
			t.Errorf("kube list: C is %s on %q, want waiting on %s", v.State, v.K8sNode, n2)
		}
	}
}

// labEvents checks that the Lab has an event for each "REASON message
// prefix".
func labEvents(t *testing.T, k *kube.Client, lab string, want ...string) {
	t.Helper()
	var evs struct {
		Items []struct{ Reason, Message string }
	}
	q := url.QueryEscape("involvedObject.kind=Lab,involvedObject.name=" + lab)
	if err := k.Get("/api/v1/namespaces/default/events?fieldSelector="+q, &evs); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		found := false
		for _, e := range evs.Items {
			found = found || strings.HasPrefix(e.Reason+" "+e.Message, w)
		}
		if !found {
			t.Errorf("no event %q on lab %s; events: %+v", w, lab, evs.Items)
		}
	}
}

// TestKubeRoute: a pod routes between two lans. R's /proc/sys/net is
// writable (its sysctl.d applied at start, `sysctl -w` later), so once
// R forwards, A on lan_one reaches B on lan_two through it; the host's
// own forwarding setting is untouched.
func TestKubeRoute(t *testing.T) {
	k := needK8s(t)
	const lab = "e2e-route"
	t.Cleanup(func() {
		if t.Failed() {
			logSwitches(t, k)
		}
		kubeRun(t, "destroy", lab)
	})
	hostFwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	kubeMust(t, "deploy", "testdata/kube_route", "--name", lab)
	cat := func(node, file, want string) {
		t.Helper()
		Eventually(t, 3*time.Minute, node+": "+file+" is "+want, func() error {
			out, err := kubeRun(t, "exec", lab, node, "--", "cat", file)
			if err != nil || strings.TrimSpace(out) != want {
				return fmt.Errorf("%v: %q", err, out)
			}
			return nil
		})
	}
	cat("R", "/proc/sys/net/ipv6/conf/all/forwarding", "1") // its sysctl.d ran
	cat("A", "/.cloonix-ready", "ready")                    // rc.d ran: addresses set
	cat("B", "/.cloonix-ready", "ready")
	cat("R", "/.cloonix-ready", "ready")
	for _, p := range []struct{ from, to string }{{"R", "10.1.1.1"}, {"R", "10.1.2.1"}, {"A", "10.1.1.254"}} {
		Eventually(t, 30*time.Second, "ping "+p.from+" -> "+p.to, func() error { return kubePing(t, lab, p.from, p.to) })
	}
	if out := kubeMust(t, "exec", lab, "R", "--", "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "0" {
		t.Fatalf("R forwards before it was asked to (ip_forward %q): the test below would prove nothing", out)
	}
	if kubePing(t, lab, "A", "10.1.2.1") == nil {
		t.Fatal("A reaches B through R before R forwards")
	}
	kubeMust(t, "exec", lab, "R", "--", "sysctl", "-w", "net.ipv4.ip_forward=1")
	Eventually(t, 30*time.Second, "ping A -> B through R", func() error { return kubePing(t, lab, "A", "10.1.2.1") })
	if _, err := kubeRun(t, "exec", lab, "R", "--", "sysctl", "-w", "kernel.panic=0"); err == nil {
		t.Error("R could set kernel.panic: only /proc/sys/net is the pod's to write")
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(now) != string(hostFwd) {
		t.Errorf("the host's ip_forward changed: %q -> %q", hostFwd, now)
	}
}
