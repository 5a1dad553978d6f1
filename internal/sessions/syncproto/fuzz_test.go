package syncproto

import (
	"bytes"
	"testing"
)

// fuzzDecode checks that decoding never panics and that whatever decodes
// encodes back to the same bytes (one encoding per message).
func fuzzDecode(f *testing.F, t Type) {
	for _, m := range sampleMessages() {
		if m.Type() == t {
			f.Add(encode(m)[1:])
		}
	}
	f.Fuzz(func(tt *testing.T, body []byte) {
		b := append([]byte{byte(t)}, body...)
		m, err := Decode(b, nil)
		if err != nil {
			return
		}
		if m.Type() != t {
			tt.Fatalf("decoded a %s from a %s", m.Type(), t)
		}
		if again := encode(m); !bytes.Equal(again, b) {
			tt.Fatalf("re-encoding differs:\n in  %x\n out %x", b, again)
		}
	})
}

func FuzzDecodeHello(f *testing.F)       { fuzzDecode(f, THello) }
func FuzzDecodeBulkStart(f *testing.F)   { fuzzDecode(f, TBulkStart) }
func FuzzDecodeBatch(f *testing.F)       { fuzzDecode(f, TBatch) }
func FuzzDecodeBulkEnd(f *testing.F)     { fuzzDecode(f, TBulkEnd) }
func FuzzDecodeAck(f *testing.F)         { fuzzDecode(f, TAck) }
func FuzzDecodeHeartbeat(f *testing.F)   { fuzzDecode(f, THeartbeat) }
func FuzzDecodeResync(f *testing.F)      { fuzzDecode(f, TResync) }
func FuzzDecodeExpect(f *testing.F)      { fuzzDecode(f, TExpect) }
func FuzzDecodeTimedBatch(f *testing.F)  { fuzzDecode(f, TTimedBatch) }
func FuzzDecodeDigest(f *testing.F)      { fuzzDecode(f, TDigest) }
func FuzzDecodeDiffer(f *testing.F)      { fuzzDecode(f, TDiffer) }
func FuzzDecodeRepairStart(f *testing.F) { fuzzDecode(f, TRepairStart) }
func FuzzDecodeRepairEnd(f *testing.F)   { fuzzDecode(f, TRepairEnd) }
