package pinger

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChecksum(t *testing.T) {
	// RFC 1071, section 3: the sum of these words is 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := checksum(b); got != ^uint16(0xddf2) {
		t.Errorf("checksum = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	if got := checksum([]byte{0xab}); got != ^uint16(0xab00) {
		t.Errorf("checksum of an odd byte = %#04x, want %#04x", got, ^uint16(0xab00))
	}
}

func TestEchoRequest(t *testing.T) {
	e := echo{id: 0x1234, seq: 0x5678, payload: []byte("hagate")}
	v4 := echoRequest(addrA, e)
	want4 := []byte{8, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 'h', 'a', 'g', 'a', 't', 'e'}
	if checksum(v4) != 0 {
		t.Errorf("IPv4 request checksum does not verify: % x", v4)
	}
	v4[2], v4[3] = 0, 0
	if !bytes.Equal(v4, want4) {
		t.Errorf("IPv4 request = % x, want % x", v4, want4)
	}
	v6 := echoRequest(addrB, e)
	want6 := append([]byte{128, 0, 0, 0}, want4[4:]...) // checksum left to the kernel
	if !bytes.Equal(v6, want6) {
		t.Errorf("IPv6 request = % x, want % x", v6, want6)
	}
}

func TestParseEchoReply(t *testing.T) {
	e := echo{id: 7, seq: 9, payload: []byte{1, 2, 3}}
	reply4 := marshalEcho(typeEchoReply4, false, e)
	reply6 := marshalEcho(typeEchoReply6, true, e)
	withHeader := func(h []byte, msg []byte) []byte { return append(append([]byte(nil), h...), msg...) }
	hdr := ipv4Header(addrA, len(reply4))
	opts := append(append([]byte(nil), hdr...), 1, 1, 1, 0) // one word of options
	opts[0] = 0x46
	notICMP := append([]byte(nil), hdr...)
	notICMP[9] = 17
	badSum := append([]byte(nil), reply4...)
	badSum[8] ^= 0xff
	badCode := marshalEcho(typeEchoReply4, false, e)
	badCode[1] = 1
	badCode[2], badCode[3] = 0, 0
	sum := checksum(badCode)
	badCode[2], badCode[3] = byte(sum>>8), byte(sum)

	tests := []struct {
		name     string
		b        []byte
		v6, ipHd bool
		want     echo
		why      dropReason
	}{
		{"IPv4 datagram socket", reply4, false, false, e, dropNone},
		{"IPv4 raw socket", withHeader(hdr, reply4), false, true, e, dropNone},
		{"IPv4 header with options", withHeader(opts, reply4), false, true, e, dropNone},
		{"IPv6", reply6, true, false, e, dropNone},
		{"IPv6 raw: no IP header", reply6, true, true, e, dropNone},
		{"empty payload", marshalEcho(typeEchoReply4, false, echo{id: 1, seq: 2, payload: []byte{}}), false, false, echo{id: 1, seq: 2, payload: []byte{}}, dropNone},
		{"empty", nil, false, false, echo{}, dropShort},
		{"header short", reply4[:7], false, false, echo{}, dropShort},
		{"IP header only", hdr, false, true, echo{}, dropShort},
		{"IP header truncated", hdr[:19], false, true, echo{}, dropIPHeader},
		{"IP version 6", withHeader(append([]byte{0x65}, hdr[1:]...), reply4), false, true, echo{}, dropIPHeader},
		{"IHL below 5", withHeader(append([]byte{0x44}, hdr[1:]...), reply4), false, true, echo{}, dropIPHeader},
		{"IHL beyond the datagram", append([]byte{0x4f}, hdr[1:]...), false, true, echo{}, dropIPHeader},
		{"not ICMP", withHeader(notICMP, reply4), false, true, echo{}, dropIPHeader},
		{"echo request", echoRequest(addrA, e), false, false, echo{}, dropType},
		{"IPv4 reply on IPv6", reply4, true, false, echo{}, dropType},
		{"IPv6 reply on IPv4", reply6, false, false, echo{}, dropType},
		{"code", badCode, false, false, echo{}, dropCode},
		{"checksum", badSum, false, false, echo{}, dropChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := parseEchoReply(tt.b, tt.v6, tt.ipHd)
			if why != tt.why {
				t.Fatalf("reason %v, want %v", why, tt.why)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(echo{})); diff != "" {
				t.Errorf("echo (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatchReply(t *testing.T) {
	want := echo{id: 7, seq: 9, payload: []byte("cookie")}
	ll := netip.MustParseAddr("fe80::1")
	tests := []struct {
		name     string
		got      echo
		src, dst netip.Addr
		why      dropReason
	}{
		{"match", want, addrA, addrA, dropNone},
		{"mapped source", want, netip.MustParseAddr("::ffff:192.0.2.1"), addrA, dropNone},
		{"zones ignored", want, ll.WithZone("3"), ll.WithZone("wan1"), dropNone},
		{"source", want, netip.MustParseAddr("192.0.2.2"), addrA, dropSource},
		{"id", echo{id: 8, seq: 9, payload: want.payload}, addrA, addrA, dropID},
		{"seq", echo{id: 7, seq: 8, payload: want.payload}, addrA, addrA, dropSeq},
		{"payload", echo{id: 7, seq: 9, payload: []byte("cookiE")}, addrA, addrA, dropPayload},
		{"truncated payload", echo{id: 7, seq: 9, payload: []byte("cook")}, addrA, addrA, dropPayload},
	}
	for _, tt := range tests {
		if why := matchReply(tt.got, tt.src, tt.dst, want); why != tt.why {
			t.Errorf("%s: reason %v, want %v", tt.name, why, tt.why)
		}
	}
}

func TestDropReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := dropNone; r <= dropPayload; r++ {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("dropReason(%d).String() = %q: empty, unknown or repeated", r, s)
		}
		seen[s] = true
	}
	if got := dropReason(200).String(); got != "unknown" {
		t.Errorf("dropReason(200).String() = %q", got)
	}
}

// FuzzParseEchoReply: any bytes, either family, with or without an IPv4
// header: no panic, and what parses re-marshals to the same message.
func FuzzParseEchoReply(f *testing.F) {
	// Seeds beyond testdata/fuzz/FuzzParseEchoReply.
	f.Add(marshalEcho(typeEchoReply4, false, echo{id: 1, seq: 1, payload: []byte("x")}), false, false)
	f.Add(marshalEcho(typeEchoReply6, true, echo{id: 1, seq: 1}), true, false)
	f.Fuzz(func(t *testing.T, b []byte, v6, ipHeader bool) {
		in := append([]byte(nil), b...)
		got, why := parseEchoReply(b, v6, ipHeader)
		if !bytes.Equal(b, in) {
			t.Fatal("parseEchoReply changed its input")
		}
		if why != dropNone {
			if got.id != 0 || got.seq != 0 || got.payload != nil {
				t.Fatalf("rejected (%v) but returned %+v", why, got)
			}
			return
		}
		msg := b
		if ipHeader && !v6 {
			msg = b[int(b[0]&0x0f)*4:]
		}
		typ := uint8(typeEchoReply4)
		if v6 {
			typ = typeEchoReply6
		}
		again := marshalEcho(typ, v6, got)
		// The checksum is compared by its verifying, not by value: 0x0000
		// and 0xffff are the same in ones' complement, and IPv6's is the
		// kernel's.
		again[2], again[3] = msg[2], msg[3]
		if !bytes.Equal(again, msg) {
			t.Fatalf("re-marshalled % x, parsed from % x", again, msg)
		}
	})
}
