// Package auth guards the relay's write endpoints (pushes, deletes, the sources API) with a
// shared token, so that a neighbour on the LAN can't overwrite or delete another operator's
// metrics. Reads (/metrics, the status page) stay open; exporter-toolkit's web config
// (--web.config.file) adds TLS and basic auth on every endpoint when reads must be protected too.
package auth

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Tokens is a set of accepted write tokens. The zero value accepts nothing.
type Tokens struct {
	tokens [][]byte
	source string // the file, for messages
}

// LoadTokenFile reads the accepted tokens from path: one per line (several lines let a token be
// rotated without downtime), blank lines and lines starting with # ignored, surrounding spaces
// trimmed. A file without any token is an error: it would lock every writer out.
func LoadTokenFile(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("write token file: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("write token file %s: %w", path, err)
	}
	t.source = path
	return t, nil
}

// ParseTokens parses the content of a token file (see LoadTokenFile).
func ParseTokens(b []byte) (*Tokens, error) {
	t := &Tokens{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("line %d: a token must not contain spaces", n)
		}
		t.tokens = append(t.tokens, []byte(line))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.tokens) == 0 {
		return nil, errors.New("no token in the file (one token per line)")
	}
	return t, nil
}

// accepts compares in constant time against every token.
func (t *Tokens) accepts(tok string) bool {
	ok := 0
	for _, want := range t.tokens {
		ok |= subtle.ConstantTimeCompare(want, []byte(tok))
	}
	return ok == 1
}

// Credential extracts the token of a request: "Authorization: Bearer <token>", or basic auth with
// the token as the password (any user name), for clients that only speak basic auth.
func Credential(r *http.Request) (tok string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(rest), true
	}
	if _, pw, ok := r.BasicAuth(); ok {
		return pw, true
	}
	return "", true
}

// Require wraps next so that it runs only for requests that carry an accepted token. A request
// without credentials gets 401 with a WWW-Authenticate challenge; one with a wrong token gets
// 403. Both bodies say what to send. With t nil, next is returned unchanged.
func Require(t *Tokens, next http.Handler) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, present := Credential(r)
		switch {
		case !present:
			w.Header().Set("WWW-Authenticate", `Bearer realm="opview-relay"`)
			http.Error(w, "this relay requires a token for writes: send \"Authorization: Bearer <token>\" with a token from the relay's --web.write-token-file (opview-relay forward: --to.token-file)", http.StatusUnauthorized)
		case !t.accepts(tok):
			http.Error(w, "the token sent is not one of the relay's write tokens (--web.write-token-file); check the token file on both sides", http.StatusForbidden)
		default:
			next.ServeHTTP(w, r)
		}
	})
}
