package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

// Exec runs cmd in a lab node's pod (as kubectl exec does) over the API's
// WebSocket exec protocol (v5.channel.k8s.io: one byte of channel, then
// data; 1 stdout, 2 stderr, 3 the final status) and returns its exit code.
func (c *Client) Exec(ctx context.Context, ns, lab, node string, cmd []string, stdout, stderr io.Writer) (int, error) {
	pods, err := c.ListPods(ns, map[string]string{LabelLab: lab, LabelNode: node})
	if err != nil {
		return -1, err
	}
	if len(pods) == 0 {
		return -1, fmt.Errorf("lab %s has no pod for node %s (cloonix kube list %s)", lab, node, lab)
	}
	q := url.Values{"container": {"node"}, "stdout": {"true"}, "stderr": {"true"}}
	for _, a := range cmd {
		q.Add("command", a)
	}
	u := strings.Replace(c.Server, "https://", "wss://", 1) + nsPath(ns) + "/pods/" + pods[0].Metadata.Name + "/exec?" + q.Encode()
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = 0 // the command may run long
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: &hc, HTTPHeader: h,
		Subprotocols: []string{"v5.channel.k8s.io", "v4.channel.k8s.io"},
	})
	if err != nil {
		return -1, fmt.Errorf("exec in pod %s: %v", pods[0].Metadata.Name, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return 0, nil
			}
			return -1, fmt.Errorf("exec in pod %s: %v", pods[0].Metadata.Name, err)
		}
		if len(b) == 0 {
			continue
		}
		switch b[0] {
		case 1:
			_, _ = stdout.Write(b[1:])
		case 2:
			_, _ = stderr.Write(b[1:])
		case 3:
			return execStatus(b[1:])
		}
	}
}

// execStatus reads the status the API sends on channel 3 at the end.
func execStatus(b []byte) (int, error) {
	var st struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
		Details struct {
			Causes []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return -1, fmt.Errorf("exec: bad status %q", b)
	}
	if st.Status == "Success" {
		return 0, nil
	}
	for _, c := range st.Details.Causes {
		if c.Reason == "ExitCode" {
			if n, err := strconv.Atoi(c.Message); err == nil {
				return n, nil
			}
		}
	}
	return -1, fmt.Errorf("exec: %s", st.Message)
}
