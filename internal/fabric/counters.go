package fabric

import "sync/atomic"

// Counters of a port or a lan.
type Counters struct {
	RxFrames, RxBytes, TxFrames, TxBytes, Drops uint64
}

type counters struct {
	rxFrames, rxBytes, txFrames, txBytes, drops atomic.Uint64
}

func (c *counters) snap() Counters {
	return Counters{c.rxFrames.Load(), c.rxBytes.Load(), c.txFrames.Load(), c.txBytes.Load(), c.drops.Load()}
}

func (c *counters) rx(n int) {
	c.rxFrames.Add(1)
	c.rxBytes.Add(uint64(n))
}

func (c *counters) tx(n int) {
	c.txFrames.Add(1)
	c.txBytes.Add(uint64(n))
}
