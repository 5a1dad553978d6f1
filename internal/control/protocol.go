// Package control owns the unix control socket between the hagate command
// and the running daemon: the wire protocol (one newline-terminated JSON
// request and one JSON response per connection), the server that authorises
// each caller by its socket credentials, and the client.
package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

const (
	// MaxRequestSize bounds a request line, newline included.
	MaxRequestSize = 64 << 10
	// MaxResponseSize bounds a response line, newline included.
	MaxResponseSize = 16 << 20
	// maxCommandLen bounds a command name.
	maxCommandLen = 32
)

// ErrTooLarge is returned when a request or response exceeds its size limit.
var ErrTooLarge = errors.New("message too large")

// Request is one command to the daemon.
type Request struct {
	Command string            `json:"command"`
	Args    map[string]string `json:"args,omitempty"`
}

// Response is the daemon's answer to one Request.
type Response struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// OK returns a successful response carrying data encoded as JSON (nothing
// when data is nil). A value that cannot be encoded gives an error response.
func OK(data any) Response {
	if data == nil {
		return Response{OK: true}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return Errorf("encode response: %v", err)
	}
	return Response{OK: true, Data: b}
}

// Errorf returns a failed response with a formatted message.
func Errorf(format string, args ...any) Response {
	return Response{Error: fmt.Sprintf(format, args...)}
}

// Decode decodes the response's data into v.
func (r Response) Decode(v any) error {
	if len(r.Data) == 0 {
		return errors.New("response carries no data")
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("decode response data: %w", err)
	}
	return nil
}

// ParseRequest decodes one request. It refuses unknown fields, trailing data
// and command names that are not 1 to 32 characters of [a-z-]; whether the
// command exists is for the handler to say.
func ParseRequest(b []byte) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("bad request: %w", err)
	}
	// A second value (or garbage) after the first is a malformed request,
	// not something to ignore silently.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, errors.New("bad request: trailing data after the request")
	}
	if !validCommand(req.Command) {
		return Request{}, fmt.Errorf("bad request: command %q is not 1 to %d characters of a-z and -", req.Command, maxCommandLen)
	}
	return req, nil
}

func validCommand(s string) bool {
	if len(s) == 0 || len(s) > maxCommandLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '-' {
			return false
		}
	}
	return true
}

// readMessage reads one message of at most max bytes, newline included. The
// newline may be missing when the peer closed its side right after the
// message (as `printf ... | socat` does); the message is then what came.
func readMessage(r io.Reader, max int) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, int64(max)+1))
	line, err := br.ReadBytes('\n')
	if len(line) > max {
		return nil, ErrTooLarge
	}
	switch {
	case err == nil:
		return line, nil
	case errors.Is(err, io.EOF) && len(bytes.TrimSpace(line)) > 0:
		return line, nil
	case errors.Is(err, io.EOF):
		return nil, io.ErrUnexpectedEOF
	default:
		return nil, err
	}
}

// encodeMessage marshals v as one line of at most max bytes.
func encodeMessage(v any, max int) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if len(b) > max {
		return nil, ErrTooLarge
	}
	return b, nil
}
