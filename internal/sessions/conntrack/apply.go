package conntrack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/sessions/session"
)

type opKind uint8

const (
	opCreate opKind = iota
	opUpdate
	opDelete
)

type op struct {
	kind opKind
	i    int // the change's index in the batch Apply was given
	s    *session.Session
}

// outcome gathers the per-change failures of one socket's work.
type outcome struct {
	first  error // the first failure's cause
	failed []int // the failed changes' indices
}

func (o *outcome) fail(x op, err error) {
	if o.first == nil {
		o.first = err
	}
	o.failed = append(o.failed, x.i)
}

// maxPasses bounds the retries of one change (create -> update -> delete +
// create).
const maxPasses = 4

// Apply installs, updates and deletes a batch of entries. It is idempotent:
// an upsert creates or updates, deleting a missing entry succeeds. Changes to
// one key are applied in order; changes to different keys run in parallel
// over Options.Workers sockets. After trying every change, it returns a
// *session.ApplyError naming those the kernel refused, or another error if
// a socket failed (and with it, for all the caller knows, any change).
func (k *Kernel) Apply(ctx context.Context, changes []session.Change) error {
	if len(changes) == 0 {
		return nil
	}
	workers := k.opts.Workers
	if len(changes) < 256 {
		workers = 1
	}
	parts := make([][]op, workers)
	for i := range changes {
		c := &changes[i]
		w := 0
		if workers > 1 {
			w = int(keyHash(&c.Session.Key) % uint32(workers))
		}
		switch c.Op {
		case session.Delete:
			parts[w] = append(parts[w], op{opDelete, i, &c.Session})
		case session.Upsert:
			kind := opCreate
			if c.Exists {
				kind = opUpdate
			}
			parts[w] = append(parts[w], op{kind, i, &c.Session})
		default:
			return fmt.Errorf("conntrack apply: unknown op %d", c.Op)
		}
	}
	outs := make([]outcome, workers)
	errs := make([]error, workers)
	if workers == 1 {
		errs[0] = k.applyOps(ctx, parts[0], &outs[0])
	} else {
		var wg sync.WaitGroup
		for i := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = k.applyOps(ctx, parts[i], &outs[i])
			}()
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var ae session.ApplyError
	for _, o := range outs {
		ae.Failed = append(ae.Failed, o.failed...)
		if ae.Err == nil {
			ae.Err = o.first
		}
	}
	if len(ae.Failed) == 0 {
		return nil
	}
	slices.Sort(ae.Failed)
	ae.Failed = slices.Compact(ae.Failed) // a remedy's two requests may both fail
	return &ae
}

// keyHash spreads keys over workers; changes to one key stay on one socket,
// in order.
func keyHash(k *session.Key) uint32 {
	h := uint32(2166136261)
	mix := func(b byte) { h = (h ^ uint32(b)) * 16777619 }
	for _, b := range k.Orig.Src[12:] {
		mix(b)
	}
	for _, b := range k.Orig.Dst[12:] {
		mix(b)
	}
	mix(byte(k.Orig.SrcPort))
	mix(byte(k.Orig.SrcPort >> 8))
	mix(byte(k.Orig.DstPort))
	mix(k.Proto)
	return h
}

// applyOps runs ops over one socket, in passes: the failures of a pass that
// have a remedy (create of an existing entry -> update, update of a missing
// one -> create, update refused -> delete and create) form the next pass.
func (k *Kernel) applyOps(ctx context.Context, ops []op, out *outcome) error {
	s, err := k.get()
	if err != nil {
		return fmt.Errorf("conntrack apply: %w", err)
	}
	healthy := true
	defer func() { k.put(s, healthy) }()
	for pass := 0; len(ops) > 0 && pass < maxPasses; pass++ {
		var next []op
		next, err = k.pass(ctx, s, ops, out)
		if err != nil {
			healthy = false
			return err
		}
		ops = next
	}
	k.failed.Add(uint64(len(ops)))
	for _, o := range ops {
		out.fail(o, fmt.Errorf("conntrack apply %s: no progress after %d passes", o.s.Key, maxPasses))
	}
	return nil
}

// sendBatch is one sendmsg's worth of requests: ops[start:end], carrying
// sequence numbers first..last.
type sendBatch struct {
	w           builder
	start, end  int
	first, last uint32
}

// fill encodes ops from start until the batch is full, the last request
// asking for an acknowledgement, and returns where it stopped.
func (k *Kernel) fill(b *sendBatch, s *socket, ops []op, start int) int {
	b.w.reset()
	b.start, b.first = start, s.seq+1
	end := start
	for end < len(ops) {
		o := ops[end]
		flags := uint16(0)
		if end == len(ops)-1 || len(b.w.b) >= k.opts.BatchBytes-512 {
			flags = nlmAck
		}
		seq := s.nextSeq()
		switch o.kind {
		case opCreate:
			b.w.create(o.s, seq, flags)
		case opUpdate:
			b.w.update(o.s, seq, flags)
		case opDelete:
			b.w.del(&o.s.Key, seq, flags)
		}
		end++
		if flags != 0 {
			break
		}
	}
	b.end, b.last = end, s.seq
	return end
}

// pipelineMin is the number of changes from which a pass encodes the next
// batch while the kernel works on the current one.
const pipelineMin = 1024

// pass sends ops once and returns those to retry. From pipelineMin changes
// up, a goroutine encodes the next batch while this one waits in sendmsg,
// where the kernel installs the current one: a bulk install then costs the
// kernel's time alone. An error other than a per-request one leaves the
// socket unusable.
func (k *Kernel) pass(ctx context.Context, s *socket, ops []op, out *outcome) ([]op, error) {
	var next []op
	if len(ops) < pipelineMin {
		var b sendBatch
		for start := 0; start < len(ops); {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			start = k.fill(&b, s, ops, start)
			var err error
			if next, err = k.send(ctx, s, &b, ops, next, out); err != nil {
				return nil, err
			}
		}
		return next, nil
	}
	full := make(chan *sendBatch, 2)
	free := make(chan *sendBatch, 3)
	for range cap(free) {
		free <- new(sendBatch)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		for start := 0; start < len(ops); {
			var b *sendBatch
			select {
			case b = <-free:
			case <-stop:
				return
			}
			start = k.fill(b, s, ops, start)
			select {
			case full <- b:
			case <-stop:
				return
			}
		}
	}()
	var ferr error
	for b := range full {
		if ferr == nil {
			ferr = ctx.Err()
			if ferr == nil {
				next, ferr = k.send(ctx, s, b, ops, next, out)
			}
			if ferr != nil {
				close(stop)
			}
		}
		free <- b
	}
	<-done
	if ferr != nil {
		return nil, ferr
	}
	return next, nil
}

// send exchanges one batch and sorts its failures: counted, remedied in
// next, or recorded in out.
func (k *Kernel) send(ctx context.Context, s *socket, b *sendBatch, ops, next []op, out *outcome) ([]op, error) {
	errs, err := k.exchange(ctx, s, b.w.b, b.first, b.last)
	if err != nil {
		k.failed.Add(uint64(len(ops) - b.start))
		return nil, fmt.Errorf("conntrack apply: %w", err)
	}
	if len(errs) == 0 {
		var n [opDelete + 1]uint64
		for _, o := range ops[b.start:b.end] {
			n[o.kind]++
		}
		k.created.Add(n[opCreate])
		k.updated.Add(n[opUpdate])
		k.deleted.Add(n[opDelete])
		return next, nil
	}
	for i := b.start; i < b.end; i++ {
		o := ops[i]
		e := errs[b.first+uint32(i-b.start)]
		switch {
		case e == 0:
			k.count(o.kind)
		case o.kind == opCreate && e == unix.EEXIST:
			next = append(next, op{opUpdate, o.i, o.s})
		case o.kind == opUpdate && e == unix.ENOENT:
			next = append(next, op{opCreate, o.i, o.s})
		case o.kind == opUpdate && e == unix.EBUSY:
			// A status bit the kernel will not clear (ASSURED,
			// SEEN_REPLY) or a changed NAT: start the entry afresh.
			next = append(next, op{opDelete, o.i, o.s}, op{opCreate, o.i, o.s})
		case o.kind == opDelete && e == unix.ENOENT:
		default:
			k.failed.Add(1)
			out.fail(o, fmt.Errorf("conntrack apply %s: %w", o.s.Key, e))
		}
	}
	return next, nil
}

func (k *Kernel) count(kind opKind) {
	switch kind {
	case opCreate:
		k.created.Add(1)
	case opUpdate:
		k.updated.Add(1)
	case opDelete:
		k.deleted.Add(1)
	}
}
