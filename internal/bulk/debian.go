package bulk

import "errors"

func (b *builder) debianFRR() error { return errors.New("not yet") }
