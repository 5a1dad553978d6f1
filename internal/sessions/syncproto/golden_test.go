package syncproto

import (
	"encoding/hex"
	"testing"

	"github.com/hagate/hagate/internal/sessions/session"
)

// TestGoldenBatches pins the bytes of a session batch (at each version's
// encoding) and of an expectation batch: release 0.1.0 reads exactly these,
// so any change to the encoders shows here first.
func TestGoldenBatches(t *testing.T) {
	writer := func(v uint8) []byte {
		w := BatchWriter{Version: v}
		w.Reset([]byte{0xaa}) // appended after what the buffer holds
		for _, c := range sampleChanges() {
			w.Add(&c)
		}
		return w.Finish(42)[1:]
	}
	reseq := func(b []byte) []byte {
		if err := SetBatchSeq(b, 7); err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"batch", AppendBatch(nil, Batch{Seq: 42, Changes: sampleChanges()}), goldenBatch},
		{"batch-writer-v3", writer(3), goldenBatch},
		{"batch-writer-v1", writer(1), goldenBatchV1},
		{"batch-empty", AppendBatch(nil, Batch{Seq: 1}), "030000000000000001" + "00000000"},
		{"expect-batch", AppendExpectBatch(nil, ExpectBatch{Seq: 42, Changes: sampleExpects()}), goldenExpectBatch},
		{"expect-batch-reseq", reseq(AppendExpectBatch(nil, ExpectBatch{Seq: 42, Changes: sampleExpects()})), "080000000000000007" + goldenExpectBatch[18:]},
		{"expect-batch-empty", AppendExpectBatch(nil, ExpectBatch{Seq: 1, Changes: []session.ExpectChange{}}), "080000000000000001" + "00000000"},
	}
	for _, c := range cases {
		if got := hex.EncodeToString(c.got); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

const (
	goldenBatch = "03000000000000002a000000078306c0000201c63364029c4000150effae1a03" +
		"07092301036674708106c0000201c63364029c4001bb0effae1a0307092301f9" +
		"060003c0000201c63364029c4001bb0effae1a0000deadc6336402cb00710901" +
		"bbee48000000000000000000000000000000010307092301051120010db80000" +
		"0000000000000000000120010db800000000000000000000000214e90035081e" +
		"0101c0000201c6336402004d08000a1d22060003c0000201c63364029c4001bb" +
		"061120010db800000000000000000000000120010db800000000000000000000" +
		"000214e90035"
	goldenBatchV1 = "03000000000000002a000000078106c0000201c63364029c4000150effae1a03" +
		"070923018106c0000201c63364029c4001bb0effae1a0307092301f9060003c0" +
		"000201c63364029c4001bb0effae1a0000deadc6336402cb00710901bbee4800" +
		"0000000000000000000000000000010307092301051120010db8000000000000" +
		"00000000000120010db800000000000000000000000214e90035081e0101c000" +
		"0201c6336402004d08000a1d22060003c0000201c63364029c4001bb06112001" +
		"0db800000000000000000000000120010db800000000000000000000000214e9" +
		"0035"
	goldenExpectBatch = "08000000000000002a00000004d106c0000201c63364020000c350ffffffff00" +
		"0006c0000201c63364029c400015ab0203667470116e61742d666f6c6c6f772d" +
		"6d61737465720100000000c3506d11000420010db80000000000000000000000" +
		"0120010db800000000000000000000000213c44e20ffffffffffffffff000000" +
		"0000000000ffff1120010db800000000000000000000000120010db800000000" +
		"000000000000000213c413c4030101037369700206c0000201c63364020000c3" +
		"500e11000420010db800000000000000000000000120010db800000000000000" +
		"000000000213c44e20"
)
