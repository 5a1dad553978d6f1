package heartbeat

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hagate/hagate/internal/cluster"
)

func TestRoundTrip(t *testing.T) {
	cases := []cluster.Heartbeat{
		{},
		{Role: cluster.Primary, Priority: 200, Override: true, MonitoredUp: 2, MonitoredTotal: 2, PingUp: 1,
			Uptime: 90 * time.Minute, FailoverSet: true, Elected: "gw1", Leaving: true, SyncPending: true, HelloLeft: 3 * time.Second, Count: 1 << 40},
		{Role: cluster.Hello, Priority: 255, Elected: "a-32-character-long-node-id-abcd"},
	}
	for _, hb := range cases {
		got, err := Decode(Encode(nil, hb))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(hb, got); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Encode(nil, cluster.Heartbeat{Role: cluster.Primary, MonitoredUp: 1, MonitoredTotal: 2, Elected: "gw1"})
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":         nil,
		"short":         good[:10],
		"version":       mutate(func(b []byte) []byte { b[0] = 9; return b }),
		"role":          mutate(func(b []byte) []byte { b[1] = 7; return b }),
		"flags":         mutate(func(b []byte) []byte { b[2] = 0x80; return b }),
		"flag bit 4":    mutate(func(b []byte) []byte { b[2] = 0x10; return b }),
		"up over total": mutate(func(b []byte) []byte { b[4] = 3; return b }),
		"long id":       mutate(func(b []byte) []byte { b[7] = 200; return b }),
		"trailing":      append(append([]byte(nil), good...), 0),
		"truncated id":  good[:len(good)-1],
		"uptime":        mutate(func(b []byte) []byte { b[8] = 0xff; return b }),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 2, MonitoredTotal: 2, Elected: "gw1", Count: 9}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		if again := Encode(nil, hb); string(again) != string(b) {
			t.Fatalf("re-encode differs:\n%x\n%x", b, again)
		}
	})
}

func BenchmarkEncodeDecode(b *testing.B) {
	hb := cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 2, MonitoredTotal: 2, Elected: "gw1"}
	buf := make([]byte, 0, MaxLen)
	for b.Loop() {
		if _, err := Decode(Encode(buf[:0], hb)); err != nil {
			b.Fatal(err)
		}
	}
}
