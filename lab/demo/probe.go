package demo

import (
	"fmt"
	"io"
	"time"

	"github.com/hagate/hagate/lab/harness"
)

// watch prints the session's counter every 250 ms, so the reader sees it
// keep running through the failover.
type watch struct{ done chan struct{} }

func startWatch(w io.Writer, s *harness.Session) *watch {
	wt := &watch{done: make(chan struct{})}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-wt.done:
				return
			case <-t.C:
				if r, err := s.Progress(); err == nil {
					fmt.Fprintf(w, "    %s  message %5d echoed, longest gap so far %s\n",
						time.Now().Format("15:04:05.000"), r.Received, r.MaxGap.Round(time.Millisecond))
				}
			}
		}
	}()
	return wt
}

func (wt *watch) stop() { close(wt.done) }
