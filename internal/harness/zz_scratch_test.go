package harness

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions"
)

func TestScratchStalledSyncPeer(t *testing.T) {
	kr, _ := seal.ParseKeys([]byte(Key))
	e, err := sessions.NewEngine(sessions.EngineConfig{NodeID: "gw2", Group: 7, Keyring: kr, Mode: seal.Encrypt,
		ListenAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:17703")}}, sessions.NewMemory(16))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:17703")
		if err != nil {
			t.Fatal(err)
		}
		var b [5]byte
		binary.BigEndian.PutUint32(b[:4], sessions.MaxFrame)
		c.Write(b[:])
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	runtime.ReadMemStats(&m1)
	t.Logf("heap in use %d MiB -> %d MiB with %d stalled connections", m0.HeapInuse>>20, m1.HeapInuse>>20, len(conns))
	time.Sleep(10 * time.Second)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("after IOTimeout: heap %d MiB", m1.HeapInuse>>20)
}
