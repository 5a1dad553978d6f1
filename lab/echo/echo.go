// Package echo is the lab's long-lived session, the one tool the
// integration tests, the demo and the benchmarks use to see whether
// traffic survives a failover and how long it stalled.
//
// Over TCP, a client sends a numbered, checksummed record every interval
// over one connection to an echo server and checks that every record
// comes back once, in order: a reset, a lost, duplicated or corrupted byte
// ends the connection (and, if asked, the client reconnects and goes on).
// Over UDP, a client sends a numbered datagram of one flow every interval
// and counts the echoes lost, duplicated and reordered; the server keeps
// per-flow state, the flow's source address, as a UDP service with
// per-client state does, and reports the flow broken when its datagrams
// arrive from another address (a new NAT mapping on the new primary).
// Either way the client measures the longest gap between echoes.
//
// The record formats are in record.go, the client's bookkeeping (a pure
// tracker fed with times) in track.go.
package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Serve accepts connections on ln and echoes every byte back until ctx
// ends; it then closes them and returns once their handlers have.
func Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("echo server: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			done := context.AfterFunc(ctx, func() { c.Close() })
			defer done()
			io.Copy(c, c)
		}()
	}
}

// ListenAndServe serves TCP (Serve) and UDP (ServeUDP) on the same address
// until ctx ends.
func ListenAndServe(ctx context.Context, addr string, logf func(format string, args ...any)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		ln.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	udpErr := make(chan error, 1)
	go func() {
		err := ServeUDP(ctx, pc, logf)
		cancel() // one server failing ends both
		udpErr <- err
	}()
	err = Serve(ctx, ln)
	cancel()
	return errors.Join(err, <-udpErr)
}
