package fabric

import "sync/atomic"

// Counters of a port or a lan.
type Counters struct {
	RxFrames, RxBytes, TxFrames, TxBytes, Drops uint64
}

// Add sums two counter sets.
func (c Counters) Add(o Counters) Counters {
	return Counters{c.RxFrames + o.RxFrames, c.RxBytes + o.RxBytes, c.TxFrames + o.TxFrames, c.TxBytes + o.TxBytes, c.Drops + o.Drops}
}

// counters is updated lock-free. The rx side is written by the port's
// reader and the tx side by its writer (two goroutines on two cores), so
// they sit on separate cache lines to avoid false sharing.
type counters struct {
	rxFrames, rxBytes atomic.Uint64
	_                 [48]byte
	txFrames, txBytes atomic.Uint64
	_                 [48]byte
	drops             atomic.Uint64
	_                 [56]byte
}

func (c *counters) snap() Counters {
	return Counters{c.rxFrames.Load(), c.rxBytes.Load(), c.txFrames.Load(), c.txBytes.Load(), c.drops.Load()}
}

func (c *counters) txN(frames, bytes uint64) {
	c.txFrames.Add(frames)
	c.txBytes.Add(bytes)
}
