package store

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Kind classifies why a push was refused, so that the HTTP layer can pick a status code.
type Kind int

const (
	// KindInvalid: the push itself is malformed or breaks the exposition rules (HTTP 400).
	KindInvalid Kind = iota
	// KindConflict: the push is valid alone but contradicts data stored for other groups, for
	// example a family type or a series another group already exposes (HTTP 409).
	KindConflict
	// KindTooLarge: the push exceeds a size limit or the store's byte budget (HTTP 413).
	KindTooLarge
	// KindFull: the store holds its maximum number of groups (HTTP 403).
	KindFull
)

// Limit names one of the store's limits (Limits' fields), so that a refusal can say which one
// was hit and the caller can name the setting that raises it.
type Limit string

// The limits a push can hit.
const (
	LimitGroups           Limit = "max-groups"
	LimitSeries           Limit = "max-series-per-group"
	LimitBytes            Limit = "max-bytes"
	LimitLabels           Limit = "label-limit"
	LimitLabelNameLength  Limit = "label-name-length-limit"
	LimitLabelValueLength Limit = "label-value-length-limit"
	LimitHelpLength       Limit = "help-length-limit"
)

// Error is a refused push. Msg names the problem in terms the pusher can act on; Limit is set
// when a limit was hit. Messages quote what was pushed only as bounded excerpts.
type Error struct {
	Kind  Kind
	Limit Limit
	Msg   string
}

func (e *Error) Error() string { return e.Msg }

func invalid(format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Msg: fmt.Sprintf(format, args...)}
}

// maxQuoted bounds what an error message quotes of a pushed name, value or series.
const maxQuoted = 64

// Quote returns s quoted like %q, cut to a bounded excerpt: at most n bytes of s (on a rune
// boundary), followed by how long s was. Every message that repeats client input uses it, so a
// refusal never grows with the input.
func Quote(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// q is Quote with the store's excerpt length.
func q(s string) string { return Quote(s, maxQuoted) }

// Truncate cuts a message to at most n bytes (on a rune boundary), marking the cut.
func Truncate(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + " [...]"
}
