package graph

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"cloonix/internal/proto"
)

// apiConsole bridges a VM's serial console to a websocket: binary frames
// both ways, the bytes as the guest's serial line has them.
func (s *Server) apiConsole(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if !s.authorized(r) {
		http.Error(w, "no valid session token; reload the page", http.StatusForbidden)
		return
	}
	vm := r.URL.Query().Get("vm")
	if err := proto.CheckName("vm", vm); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.opt.Console == nil {
		http.Error(w, "this switch offers no consoles", http.StatusNotImplemented)
		return
	}
	con, err := s.opt.Console(vm)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer con.Close()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// Guest to page.
	go func() {
		defer cancel()
		buf := make([]byte, 32<<10)
		for {
			n, err := con.Read(buf)
			if n > 0 {
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				werr := c.Write(wctx, websocket.MessageBinary, buf[:n])
				wcancel()
				if werr != nil {
					return
				}
			}
			if err != nil {
				msg := "console closed"
				if err != io.EOF {
					msg = "console closed: " + err.Error()
				}
				if len(msg) > 120 {
					msg = msg[:120]
				}
				c.Close(websocket.StatusNormalClosure, msg)
				return
			}
		}
	}()
	// Page to guest.
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if _, err := con.Write(b); err != nil {
			return
		}
	}
}
