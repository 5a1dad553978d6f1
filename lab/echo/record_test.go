package echo

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, seq := range []uint64{0, 1, 255, 1 << 40, ^uint64(0)} {
		b := AppendRecord(nil, seq)
		if len(b) != RecordSize {
			t.Fatalf("record of %d is %d bytes", seq, len(b))
		}
		got, err := ParseRecord(b)
		if err != nil || got != seq {
			t.Errorf("ParseRecord(AppendRecord(%d)) = %d, %v", seq, got, err)
		}
	}
}

func TestParseRecordRejects(t *testing.T) {
	good := AppendRecord(nil, 7)
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortRecord},
		{"truncated", good[:15], ErrShortRecord},
		{"magic", flip(0), ErrBadMagic},
		{"sequence", flip(11), ErrBadChecksum},
		{"checksum", flip(15), ErrBadChecksum},
	}
	for _, tt := range tests {
		if _, err := ParseRecord(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add(AppendRecord(nil, 0))
	f.Add(AppendRecord(nil, 1<<63))
	f.Add([]byte("hgb1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, err := ParseRecord(b)
		if err != nil {
			return
		}
		// Whatever parses must be exactly what AppendRecord writes.
		if again := AppendRecord(nil, seq); string(again) != string(b[:RecordSize]) {
			t.Fatalf("parsed %d from %x, which re-encodes as %x", seq, b[:RecordSize], again)
		}
	})
}

func TestDatagramRoundTrip(t *testing.T) {
	for _, d := range []Datagram{
		{KindEcho, 0, 0},
		{KindEcho, 0xdeadbeef, 1 << 40},
		{KindMoved, ^uint64(0), ^uint64(0)},
	} {
		b := AppendDatagram([]byte("prefix"), d)[len("prefix"):]
		if len(b) != DatagramSize {
			t.Fatalf("datagram %+v is %d bytes", d, len(b))
		}
		got, err := ParseDatagram(b)
		if err != nil {
			t.Fatalf("ParseDatagram(AppendDatagram(%+v)): %v", d, err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestParseDatagramRejects(t *testing.T) {
	good := AppendDatagram(nil, Datagram{KindEcho, 42, 7})
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 1
		return b
	}
	// A checksummed datagram of an unknown kind.
	odd := AppendDatagram(nil, Datagram{Kind: 'X', Flow: 42, Seq: 7})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortRecord},
		{"truncated", good[:DatagramSize-1], ErrShortRecord},
		{"TCP record", AppendRecord(nil, 7), ErrShortRecord},
		{"magic", flip(0), ErrBadMagic},
		{"kind", flip(4), ErrBadChecksum},
		{"flow", flip(8), ErrBadChecksum},
		{"sequence", flip(20), ErrBadChecksum},
		{"checksum", flip(24), ErrBadChecksum},
		{"unknown kind", odd, ErrBadKind},
	}
	for _, tt := range tests {
		if _, err := ParseDatagram(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzParseDatagram(f *testing.F) {
	f.Add(AppendDatagram(nil, Datagram{KindEcho, 1, 2}))
	f.Add(AppendDatagram(nil, Datagram{KindMoved, 1, 2}))
	f.Add([]byte("hgu1E"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDatagram(b)
		if err != nil {
			return
		}
		if again := AppendDatagram(nil, d); string(again) != string(b[:DatagramSize]) {
			t.Fatalf("parsed %+v from %x, which re-encodes as %x", d, b[:DatagramSize], again)
		}
	})
}
