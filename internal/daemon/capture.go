package daemon

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"strconv"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
)

// Capture (docs/protocol.md, "Capture streams"). The request
//
//	<capture id="1" name="lan_one" count="100" duration="10s"/>
//
// is answered with an ordinary reply; on success the connection then
// carries the capture as pcapng, in chunks: a 4-byte big-endian length
// and that many bytes of pcapng, repeated; a zero length ends the data
// and is followed by one line <capture_end frames=".." dropped=".."
// reason=".."/>, then the switch closes. The client ends a capture early
// by shutting down its sending side (or just closing).

// MaxCaptures bounds captures running at once.
const MaxCaptures = 64

func captureFeature() Feature {
	return Feature{Name: "capture", Verbs: []Verb{typed((*Daemon).capture)}}
}

func (d *Daemon) capture(c *client, r *proto.Capture) (any, error) {
	t, err := d.resolveTarget(r.Target)
	if err != nil {
		return nil, err
	}
	count, queue := 0, fabric.TapQueue
	if r.Count != nil {
		count = *r.Count
	}
	if r.Queue != nil {
		queue = *r.Queue
	}
	dur, _ := r.Dur() // checked by Validate
	d.subMu.Lock()
	_, subscribed := d.subs[c]
	d.subMu.Unlock()
	if subscribed {
		return nil, fmt.Errorf("<capture> needs its own connection (this one receives events)")
	}
	d.capMu.Lock()
	if d.capCount >= MaxCaptures {
		d.capMu.Unlock()
		return nil, fmt.Errorf("%d captures are running already; stop one first", MaxCaptures)
	}
	d.capCount++
	d.capMu.Unlock()
	var tap *fabric.Tap
	var ifaces []pcapgo.NgInterface
	if t.lan != "" {
		tap, err = d.Fab.CaptureLan(t.lan, queue)
		ifaces = []pcapgo.NgInterface{{Name: t.lan, Description: "frames entering lan " + t.lan}}
	} else {
		p := t.ports[0]
		tap, err = d.Fab.CapturePort(p, queue)
		ifaces = []pcapgo.NgInterface{
			{Name: p + "-in", Description: "frames from " + p + "'s peer into the switch"},
			{Name: p + "-out", Description: "frames from the switch to " + p + "'s peer"},
		}
	}
	if err != nil {
		capDone(d)
		return nil, fmt.Errorf("capture %s: %v", t.name(), err)
	}
	d.Emit("capture_started", "name", tap.Name())
	c.takeover = func(conn net.Conn) {
		defer capDone(d)
		frames, dropped, reason := d.streamCapture(conn, tap, ifaces, int64(count), dur)
		d.Emit("capture_ended", "name", tap.Name(), "frames", strconv.FormatInt(frames, 10),
			"dropped", strconv.FormatUint(dropped, 10), "reason", reason)
	}
	return nil, nil
}

func capDone(d *Daemon) {
	d.capMu.Lock()
	d.capCount--
	d.capMu.Unlock()
}

// chunker frames the pcapng bytes (see the protocol comment above).
type chunker struct{ w *bufio.Writer }

func (c chunker) Write(p []byte) (int, error) {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(p)))
	if _, err := c.w.Write(h[:]); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// capStream is one capture's pcapng stream to its client.
type capStream struct {
	bw    *bufio.Writer
	ng    *pcapgo.NgWriter
	seen  [2]uint64 // frames written per interface
	n     int64
	count int64 // 0: no limit
}

// openCapStream writes the pcapng header, at once so a live reader starts.
func openCapStream(conn net.Conn, tap *fabric.Tap, ifaces []pcapgo.NgInterface, count int64) (*capStream, error) {
	cs := &capStream{bw: bufio.NewWriterSize(conn, 64<<10), count: count}
	for i := range ifaces {
		ifaces[i].LinkType = layers.LinkTypeEthernet
		ifaces[i].OS = runtime.GOOS
		ifaces[i].TimestampResolution = 9
	}
	ng, err := pcapgo.NewNgWriterInterface(chunker{cs.bw}, ifaces[0], pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "cloonix capture " + tap.Name()}})
	for _, ifc := range ifaces[1:] {
		if err == nil {
			_, err = ng.AddInterface(ifc)
		}
	}
	cs.ng = ng
	if err == nil {
		err = cs.flush()
	}
	return cs, err
}

func (cs *capStream) flush() error {
	if err := cs.ng.Flush(); err != nil {
		return err
	}
	return cs.bw.Flush()
}

func (cs *capStream) full() bool { return cs.count != 0 && cs.n >= cs.count }

// write writes a batch (up to the count) and flushes it, so a live
// reader sees each batch at once; every frame of the batch is released.
func (cs *capStream) write(batch []fabric.Captured) error {
	var err error
	for i, c := range batch {
		if err == nil && !cs.full() {
			b := c.Frame.Bytes()
			err = cs.ng.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(0, c.Time), CaptureLength: len(b), Length: len(b), InterfaceIndex: c.Iface}, b)
			if err == nil {
				cs.n++
				cs.seen[c.Iface]++
			}
		}
		c.Release()
		batch[i] = fabric.Captured{}
	}
	if err != nil {
		return err
	}
	return cs.flush()
}

// finish writes the interface statistics (tshark and capinfos show the
// drops) and the capture_end message after the stream's end marker.
func (cs *capStream) finish(conn net.Conn, tap *fabric.Tap, nIfaces int, start time.Time, dropped uint64, reason string) bool {
	end := time.Now()
	for i := 0; i < nIfaces; i++ {
		st := pcapgo.NgInterfaceStatistics{LastUpdate: end, StartTime: start, EndTime: end, PacketsReceived: cs.seen[i], PacketsDropped: pcapgo.NgNoValue64}
		if i == 0 {
			st.PacketsDropped = dropped // the tap's drops are not per direction
		}
		if cs.ng.WriteInterfaceStats(i, st) != nil {
			return false
		}
	}
	if cs.flush() != nil {
		return false
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	cs.bw.Write([]byte{0, 0, 0, 0})
	cs.bw.Write((&proto.Msg{Name: "capture_end", Attrs: map[string]string{
		"name": tap.Name(), "frames": strconv.FormatInt(cs.n, 10), "dropped": strconv.FormatUint(dropped, 10), "reason": reason}}).Bytes())
	if err := cs.bw.Flush(); err != nil {
		log.Printf("capture %s: end not delivered: %v", tap.Name(), err)
	}
	return true
}

// streamCapture writes the tap to conn until count, duration, the client
// leaving, the port's deletion or the switch stopping; it returns what
// it wrote, what the capture missed and why it stopped.
func (d *Daemon) streamCapture(conn net.Conn, tap *fabric.Tap, ifaces []pcapgo.NgInterface, count int64, dur time.Duration) (n int64, dropped uint64, reason string) {
	defer tap.Close()
	start := time.Now()
	cs, err := openCapStream(conn, tap, ifaces, count)
	if err != nil {
		return 0, tap.Dropped(), "client gone"
	}
	gone := make(chan struct{})
	go func() {
		// The client sends nothing more: EOF or an error means it is done.
		_, _ = io.Copy(io.Discard, conn)
		close(gone)
	}()
	var timeout <-chan time.Time
	if dur > 0 {
		tm := time.NewTimer(dur)
		defer tm.Stop()
		timeout = tm.C
	}
	var batch []fabric.Captured
	stop := false
	for !stop && !cs.full() {
		stop = true
		select {
		case <-tap.Ready():
			batch = tap.Take(batch)
			if cs.write(batch) != nil {
				reason = "client gone"
			} else {
				stop = false
			}
		case <-tap.Done():
			reason = tap.Reason()
		case <-timeout:
			reason = "duration reached"
		case <-gone:
			reason = "stopped by the client"
		case <-d.Done():
			reason = "the switch is stopping"
		}
	}
	if reason == "" {
		reason = "count reached"
	}
	dropped = tap.Dropped()
	if reason != "client gone" && !cs.finish(conn, tap, len(ifaces), start, dropped, reason) {
		reason = "client gone"
	}
	return cs.n, dropped, reason
}
