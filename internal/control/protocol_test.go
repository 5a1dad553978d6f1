package control

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Request
		wantErr string
	}{
		{name: "plain", in: `{"command":"status"}`, want: Request{Command: "status"}},
		{name: "newline", in: "{\"command\":\"status\"}\n", want: Request{Command: "status"}},
		{name: "args", in: `{"command":"failover-set","args":{"node":"fw-b"}}`,
			want: Request{Command: "failover-set", Args: map[string]string{"node": "fw-b"}}},
		{name: "32 chars", in: `{"command":"` + strings.Repeat("a", 32) + `"}`, want: Request{Command: strings.Repeat("a", 32)}},
		{name: "33 chars", in: `{"command":"` + strings.Repeat("a", 33) + `"}`, wantErr: "command"},
		{name: "empty command", in: `{"command":""}`, wantErr: "command"},
		{name: "no command", in: `{}`, wantErr: "command"},
		{name: "upper case", in: `{"command":"Status"}`, wantErr: "command"},
		{name: "digit", in: `{"command":"s1"}`, wantErr: "command"},
		{name: "unknown field", in: `{"command":"status","verbose":true}`, wantErr: "unknown field"},
		{name: "args not strings", in: `{"command":"status","args":{"n":1}}`, wantErr: "bad request"},
		{name: "trailing value", in: `{"command":"status"}{"command":"status"}`, wantErr: "trailing"},
		{name: "trailing garbage", in: `{"command":"status"}]`, wantErr: "trailing"},
		{name: "null", in: `null`, wantErr: "command"},
		{name: "array", in: `[]`, wantErr: "bad request"},
		{name: "empty", in: ``, wantErr: "bad request"},
		{name: "truncated", in: `{"command":"sta`, wantErr: "bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRequest(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRequest(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"command":"status"}`))
	f.Add([]byte(`{"command":"failover-set","args":{"node":"fw-b"}}`))
	f.Add([]byte(`{"command":"x","args":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseRequest(b)
		if err != nil {
			return
		}
		if !validCommand(req.Command) {
			t.Fatalf("accepted invalid command %q", req.Command)
		}
		// What was accepted survives a round trip through the client's encoder.
		msg, err := encodeMessage(req, 4*MaxRequestSize)
		if err != nil {
			t.Fatalf("encode accepted request: %v", err)
		}
		again, err := ParseRequest(msg)
		if err != nil {
			t.Fatalf("re-parse %q: %v", msg, err)
		}
		// An empty args object is sent as none at all.
		if diff := cmp.Diff(req, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		want    string
		wantErr error
	}{
		{name: "line", in: "abc\nrest", max: 10, want: "abc\n"},
		{name: "no newline then EOF", in: "abc", max: 10, want: "abc"},
		{name: "exactly max", in: "abcd\n", max: 5, want: "abcd\n"},
		{name: "over max", in: "abcde\n", max: 5, wantErr: ErrTooLarge},
		{name: "over max no newline", in: "abcdefgh", max: 5, wantErr: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readMessage(strings.NewReader(tt.in), tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("readMessage error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("readMessage = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := readMessage(strings.NewReader(" \n"[:1]), 10); err == nil {
		t.Error("readMessage accepted a blank message without newline")
	}
}

func TestParseStatusGroups(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []uint32
		wantErr bool
	}{
		{name: "groups", in: "Name:\tx\nUid:\t1\t1\t1\t1\nGroups:\t4 24 65534 \nNSpid:\t1\n", want: []uint32{4, 24, 65534}},
		{name: "none", in: "Name:\tx\nGroups:\t\n", want: []uint32{}},
		{name: "missing", in: "Name:\tx\n", wantErr: true},
		{name: "bad id", in: "Groups:\t4 x\n", wantErr: true},
		{name: "too big", in: "Groups:\t4294967296\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusGroups(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStatusGroups error = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseStatusGroups(f *testing.F) {
	f.Add([]byte("Name:\tx\nGroups:\t4 24 65534 \n"))
	f.Add([]byte("Groups:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		groups, err := parseStatusGroups(bytes.NewReader(b))
		if err == nil && groups == nil {
			t.Fatal("nil groups without error")
		}
	})
}
