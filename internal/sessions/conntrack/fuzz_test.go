package conntrack

import (
	"testing"

	"github.com/hagate/hagate/internal/sessions/session"
)

// The parsers read what the kernel sends, dumps and events alike; a
// malformed message must come back as an error, never a panic that takes
// the daemon down. The seed corpora (testdata/fuzz/<Name>/) hold valid IPv4
// and IPv6 messages, truncated ones, nested garbage and zero-length
// attributes.

// FuzzParseFlow: parseFlow never panics, and whatever it accepts the
// encoders can write out again and parseFlow read back.
func FuzzParseFlow(f *testing.F) {
	fuzzParser(f, parseFlow, func(w *builder, s *session.Session) {
		w.create(s, 1, 0)
		w.update(s, 2, 0)
		w.del(&s.Key, 3, 0)
	})
}

// FuzzParseExpect is FuzzParseFlow for expectations.
func FuzzParseExpect(f *testing.F) {
	fuzzParser(f, parseExpect, func(w *builder, x *session.Expect) {
		w.createExpect(x, 1)
		w.delExpect(&x.ExpectKey, 3)
	})
}

// fuzzParser runs parse on every input; what parses is given to encode,
// and every message encode writes must parse again.
func fuzzParser[T any](f *testing.F, parse func([]byte) (T, error), encode func(*builder, *T)) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parse(data)
		if err != nil {
			return
		}
		var w builder
		encode(&w, &v)
		for b := w.b; len(b) > 0; {
			m, rest, ok := nextMsg(b)
			if !ok {
				t.Fatalf("encoder wrote a malformed message: %x", w.b)
			}
			b = rest
			if _, err := parse(m.data); err != nil {
				t.Fatalf("re-encoded message %x does not parse: %v", m.data, err)
			}
		}
	})
}
