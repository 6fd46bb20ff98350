package api

import (
	"context"
	"strings"

	"golang.org/x/sync/semaphore"
)

// Gate bounds the push bodies decoded at once, by size: decoding takes memory in proportion to
// the decompressed body, so concurrent large pushes must wait their turn instead of adding up.
// A push holds its Content-Length of the gate's capacity, or the largest body allowed when its
// size is unknown before reading (chunked or compressed bodies); small pushes share it, a few
// maximum-size ones take turns.
type Gate struct {
	sem     *semaphore.Weighted
	maxBody int64
}

// NewGate returns a gate letting pushes of capacity bytes in all decode at once, each counted as
// at most maxBody. A nil *Gate lets everything through.
func NewGate(capacity, maxBody int64) *Gate {
	if capacity <= 0 || maxBody <= 0 {
		return nil
	}
	return &Gate{sem: semaphore.NewWeighted(max(capacity, maxBody)), maxBody: maxBody}
}

// Enter waits for room for a body of contentLength bytes (-1: unknown) with the given
// Content-Encoding, until ctx ends. The returned function leaves the gate.
func (g *Gate) Enter(ctx context.Context, contentLength int64, contentEncoding string) (func(), error) {
	if g == nil {
		return func() {}, nil
	}
	n := g.Weight(contentLength, contentEncoding)
	if err := g.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { g.sem.Release(n) }, nil
}

// Weight is the room in the gate a body of contentLength bytes (-1: unknown) with the given
// Content-Encoding takes: its size, or the largest body allowed when its decoded size is not
// known before reading. 0 for a nil *Gate.
func (g *Gate) Weight(contentLength int64, contentEncoding string) int64 {
	if g == nil {
		return 0
	}
	if contentLength >= 0 && contentLength < g.maxBody && !isCompressed(contentEncoding) {
		return max(contentLength, 4096)
	}
	return g.maxBody
}

func isCompressed(enc string) bool {
	enc = strings.ToLower(strings.TrimSpace(enc))
	return enc != "" && enc != "identity"
}
