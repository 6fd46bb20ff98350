package api

import (
	"context"
	"testing"
	"time"
)

// TestGateBoundsDecodingBySize: two maximum-size (or compressed, or unknown-size) pushes decode
// at once, a third waits; small pushes share the room by their size.
func TestGateBoundsDecodingBySize(t *testing.T) {
	const maxBody = 16 << 20
	g := NewGate(2*maxBody, maxBody)
	ctx := context.Background()
	r1, err := g.Enter(ctx, -1, "") // size unknown: counts as the maximum
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.Enter(ctx, 100, "gzip") // compressed: counts as the maximum
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := g.Enter(short, 1000, ""); err == nil {
		t.Fatal("a third push entered while two maximum-size ones decode")
	}
	r1()
	var small []func()
	for range 100 { // 100 pushes of 100 KiB fit in the room one maximum-size push left
		r, err := g.Enter(ctx, 100<<10, "")
		if err != nil {
			t.Fatal(err)
		}
		small = append(small, r)
	}
	for _, r := range small {
		r()
	}
	r2()
	var none *Gate
	if r, err := none.Enter(ctx, -1, ""); err != nil {
		t.Fatal(err)
	} else {
		r()
	}
}
