package store

// Kind classifies why a push was refused, so that the HTTP layer can pick a status code.
type Kind int

const (
	// KindInvalid: the push itself is malformed or breaks the exposition rules (HTTP 400).
	KindInvalid Kind = iota
	// KindConflict: the push is valid alone but contradicts data stored for other groups, for
	// example a family type or a series another group already exposes (HTTP 409).
	KindConflict
	// KindTooLarge: the push exceeds a size limit (HTTP 413).
	KindTooLarge
	// KindFull: the store holds its maximum number of groups (HTTP 403).
	KindFull
)

// Error is a refused push. Msg names the problem in terms the pusher can act on.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func invalid(format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Msg: sprintf(format, args...)}
}
