package config

import "testing"

// FuzzParse checks that no input makes Parse panic, that it returns either a
// config or an error, that every error is an *Error with a message, and that
// what it accepts passes Validate. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(contractExample))
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if (err == nil) == (c == nil) {
			t.Fatalf("Parse returned config %v and error %v: want exactly one", c != nil, err)
		}
		if err != nil {
			for _, e := range errorsOf(t, err) {
				if e.Msg == "" {
					t.Fatalf("error without a message: %#v", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
		}
	})
}
