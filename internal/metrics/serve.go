package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// The endpoint answers a scraper or two; anyone who can reach it must not
// be able to hold connections open (slow headers, idle keep-alives) or
// open them without end.
var limits = struct {
	readHeader, write, idle, shutdown time.Duration
	conns                             int // open connections at most; more wait in the kernel's backlog
}{
	readHeader: 5 * time.Second,
	write:      30 * time.Second,
	idle:       60 * time.Second, // above Prometheus' usual 15-30 s scrape interval: one connection is reused
	shutdown:   5 * time.Second,
	conns:      16,
}

// Listen opens the metrics address, so that a daemon can refuse to start
// when it is taken, before anything else runs.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w", addr, err)
	}
	return ln, nil
}

// Serve listens on addr and serves /metrics and /healthz until ctx ends,
// then shuts down gracefully. An error to listen is returned at once;
// otherwise Serve returns nil when ctx ends.
func Serve(ctx context.Context, addr string, m *Metrics, log *slog.Logger) error {
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	return serve(ctx, ln, m, log)
}

// ServeListener is Serve on a listener already open (see Listen), for a
// daemon that listens first so that an address in use stops its start. It
// closes ln.
func (m *Metrics) ServeListener(ctx context.Context, ln net.Listener) error {
	return serve(ctx, ln, m, nil)
}

func serve(ctx context.Context, ln net.Listener, m *Metrics, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", m.healthz)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: limits.readHeader,
		ReadTimeout:       limits.readHeader, // GET only: no body to wait for
		WriteTimeout:      limits.write,
		IdleTimeout:       limits.idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving metrics", "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(netutil.LimitListener(ln, limits.conns)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	// A scrape in progress gets a moment to finish; then it is cut.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limits.shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}
