package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScrapePairAlternates: both servers are scraped the same number of times, in alternation
// (never the same server three times in a row), and each gets its own median and size.
func TestScrapePairAlternates(t *testing.T) {
	var mu sync.Mutex
	var order []string
	server := func(name string, size int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			_, _ = w.Write([]byte(strings.Repeat("x", size)))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := server("a", 100), server("b", 7)
	sec, size, err := ScrapePair(context.Background(), a.URL, b.URL, "text/plain", 5, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if size != [2]int64{100, 7} || sec[0] <= 0 || sec[1] <= 0 {
		t.Fatalf("ScrapePair = %v, %v", sec, size)
	}
	got := strings.Join(order, "")
	if want := "ab" + "ab" + "ba" + "ab" + "ba" + "ab"; got != want {
		t.Fatalf("scrapes in the order %q, want %q (a warm-up of each, then five pairs, alternating which goes first)", got, want)
	}
}
