package graph

import (
	"context"
	"io"
	"net/http"
	"strings"
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
	// Accept first, so a failure reaches the page as the close reason
	// (a browser does not show a refused websocket's HTTP answer).
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	if s.opt.Console == nil {
		closeWith(c, websocket.StatusInternalError, "this switch offers no consoles")
		return
	}
	con, err := s.opt.Console(vm)
	if err != nil {
		closeWith(c, websocket.StatusInternalError, err.Error())
		return
	}
	defer con.Close()
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
				closeWith(c, websocket.StatusNormalClosure, msg)
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

// closeWith closes with a reason cut to what a close frame holds (123
// bytes), on a rune boundary.
func closeWith(c *websocket.Conn, code websocket.StatusCode, reason string) {
	if len(reason) > 123 {
		reason = strings.ToValidUTF8(reason[:120], "") + "..."
	}
	c.Close(code, reason)
}
