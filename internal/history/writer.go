package history

import "errors"

// Queue adds e to the history at once (Last shows it) and leaves writing
// and syncing it to disk to a goroutine of its own, so that the caller,
// the daemon's loop at a role change, never waits for the disk. A write
// that fails is reported to onError, on that goroutine; later entries are
// still tried. Close writes what is queued.
func (l *Log) Queue(e Entry, onError func(error)) error {
	if err := l.add(e); err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("history: log is closed")
	}
	if l.w == nil {
		l.w = &writer{kick: make(chan struct{}, 1), done: make(chan struct{})}
		go l.w.run(l, onError)
	}
	w := l.w
	l.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // a flush is already due: it takes this entry too
	}
	return nil
}

// writer writes the queued entries, a flush per kick.
type writer struct {
	kick chan struct{} // closed by stopWriter
	done chan struct{}
}

func (w *writer) run(l *Log, onError func(error)) {
	defer close(w.done)
	for range w.kick {
		if err := l.flush(); err != nil && onError != nil {
			onError(err)
		}
	}
}

// stopWriter ends Queue's writer, if it was started, once it has written
// what was queued before.
func (l *Log) stopWriter() {
	l.mu.Lock()
	w := l.w
	l.w = nil
	l.mu.Unlock()
	if w == nil {
		return
	}
	close(w.kick)
	<-w.done
}
