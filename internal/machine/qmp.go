package machine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// QMP is QEMU's control protocol (JSON lines on a unix socket, -qmp).
// We need four commands (set_link, stop, cont, quit): a client of our own
// is shorter than a dependency (digitalocean/go-qemu pulls in libvirt
// bindings and a code generator for these).

// qmpCall connects to sock, negotiates capabilities and runs one command;
// asynchronous events in between are skipped. QEMU serves one QMP client
// at a time, so calls are serialised by the caller (Machine.qmpMu).
func qmpCall(ctx context.Context, sock, cmd string, args any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return fmt.Errorf("QMP %s: %w", sock, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	r := bufio.NewReader(c)
	if _, err := qmpRead(r, false); err != nil { // the greeting
		return fmt.Errorf("QMP greeting: %v", err)
	}
	for _, m := range []struct {
		cmd  string
		args any
	}{{"qmp_capabilities", nil}, {cmd, args}} {
		req := map[string]any{"execute": m.cmd}
		if m.args != nil {
			req["arguments"] = m.args
		}
		b, _ := json.Marshal(req)
		if _, err := c.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("QMP %s: %v", m.cmd, err)
		}
		if _, err := qmpRead(r, true); err != nil {
			if m.cmd == "quit" {
				return nil // QEMU may close before answering
			}
			return fmt.Errorf("QMP %s: %v", m.cmd, err)
		}
	}
	return nil
}

// qmpMsg is one QMP message: a greeting, a return, an error or an event.
type qmpMsg struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Event  string          `json:"event"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// qmpRead reads messages until a greeting (reply false) or a command's
// answer (reply true).
func qmpRead(r *bufio.Reader, reply bool) (*qmpMsg, error) {
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var m qmpMsg
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("bad QMP message %q: %v", clip(string(line)), err)
		}
		switch {
		case m.Event != "":
			continue
		case m.Error != nil:
			return nil, fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		case !reply && m.QMP != nil, reply && m.Return != nil:
			return &m, nil
		}
	}
}
