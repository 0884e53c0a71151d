package fabric

import (
	"errors"
	"net"
	"os"
)

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)
}
