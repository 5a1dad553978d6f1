package demo

import (
	"fmt"
	"io"
	"time"

	"github.com/hagate/hagate/internal/harness"
	"github.com/hagate/hagate/internal/lab"
)

// startSession opens the long-lived echo session, retrying while the
// cluster settles.
func startSession(c *harness.Cluster) (*harness.Session, error) {
	var s *harness.Session
	err := lab.WaitFor(10*time.Second, 200*time.Millisecond, func() (bool, error) {
		var err error
		if s, err = c.StartSession(50 * time.Millisecond); err != nil {
			return false, err
		}
		time.Sleep(500 * time.Millisecond)
		if r, err := s.Progress(); err == nil && r.Received > 3 && s.Alive() {
			return true, nil
		}
		s.Stop()
		return false, nil
	})
	return s, err
}

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
