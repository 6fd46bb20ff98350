package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The exposition formats scraped, by the names figures use.
const (
	AcceptText       = "text/plain;version=0.0.4;q=1"
	AcceptProto      = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=1"
	ContentTypeProto = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

// Formats are the scrape formats, text first.
var Formats = []struct{ Name, Accept string }{{"text", AcceptText}, {"proto", AcceptProto}}

// Client is the load's HTTP client: no compression (it would hide the serving cost; Prometheus
// asks for gzip), enough idle connections for the pushers.
var Client = &http.Client{
	Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
	Timeout:   5 * time.Minute,
}

// GroupURL is the push URL of group i: {job="bench", instance="gNNN"}.
func GroupURL(base string, i int) string {
	return fmt.Sprintf("%s/metrics/job/bench/instance/g%03d", base, i)
}

// Push PUTs body (delimited protobuf) as group i.
func Push(ctx context.Context, base string, i int, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, GroupURL(base, i), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentTypeProto)
	resp, err := Client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push to group %d: HTTP %d: %s", i, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// PushLoad re-pushes the groups 0..n-1 round robin from conc workers, for at most max pushes
// and d (a push in flight when d ends completes and counts), and returns the push figures.
// cpu reads the server's CPU seconds.
func PushLoad(ctx context.Context, base string, cpu func() (float64, error), n, conc, max int, d time.Duration, body []byte) (map[string]float64, error) {
	cpu0, err := cpu()
	if err != nil {
		return nil, err
	}
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				k := int(next.Add(1)) - 1
				if k >= max {
					return
				}
				t0 := time.Now()
				err := Push(ctx, base, k%n, body)
				el := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, el)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, firstErr
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	cpu1, err := cpu()
	if err != nil {
		return nil, err
	}
	return pushFigures(lat, elapsed, cpu1-cpu0), nil
}

// pushFigures are the figures of a push phase: len(lat) pushes in elapsed, using cpuSeconds of
// the server.
func pushFigures(lat []time.Duration, elapsed time.Duration, cpuSeconds float64) map[string]float64 {
	if len(lat) == 0 || elapsed <= 0 {
		return map[string]float64{}
	}
	slices.Sort(lat)
	return map[string]float64{
		PushesPerSecond:   float64(len(lat)) / elapsed.Seconds(),
		PushP50Seconds:    Quantile(lat, 0.50).Seconds(),
		PushP99Seconds:    Quantile(lat, 0.99).Seconds(),
		CPUSecondsPerPush: cpuSeconds / float64(len(lat)),
	}
}

// ScrapeOnce GETs base/metrics asking for accept, into keep when not nil, and returns the body's
// size and Content-Type.
func ScrapeOnce(ctx context.Context, base, accept string, keep *bytes.Buffer) (int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", accept)
	resp, err := Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var w io.Writer = io.Discard
	if keep != nil {
		keep.Reset()
		w = keep
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s/metrics: HTTP %d", base, resp.StatusCode)
	}
	return n, resp.Header.Get("Content-Type"), err
}

// ScrapePair scrapes two servers in alternation (a then b, then b then a, and so on), after a
// warm-up scrape of each, at most max times each within d (at least once), and returns the median
// scrape time and the size of the last response of each: the two medians share the machine's
// state of the same moments, which a phase per server does not.
func ScrapePair(ctx context.Context, a, b, accept string, max int, d time.Duration) (seconds [2]float64, size [2]int64, err error) {
	bases := [2]string{a, b}
	for _, base := range bases {
		if _, _, err := ScrapeOnce(ctx, base, accept, nil); err != nil {
			return seconds, size, err
		}
	}
	var lat [2][]float64
	deadline := time.Now().Add(d)
	for i := 0; len(lat[1]) < max && (len(lat[1]) == 0 || time.Now().Before(deadline)); i++ {
		for k := range 2 {
			j := (i + k) % 2
			t0 := time.Now()
			n, _, err := ScrapeOnce(ctx, bases[j], accept, nil)
			if err != nil {
				return seconds, size, err
			}
			lat[j] = append(lat[j], time.Since(t0).Seconds())
			size[j] = n
		}
	}
	for j := range 2 {
		s, _ := Summarize(lat[j])
		seconds[j] = s.Median
	}
	return seconds, size, nil
}

// ScrapeLoad scrapes once to warm the connection, then at most max times within d (at least
// once), and returns the median scrape time and the size of the last response.
func ScrapeLoad(ctx context.Context, base, accept string, max int, d time.Duration) (seconds float64, size int64, err error) {
	if _, _, err := ScrapeOnce(ctx, base, accept, nil); err != nil {
		return 0, 0, err
	}
	var lat []float64
	deadline := time.Now().Add(d)
	for len(lat) < max && (len(lat) == 0 || time.Now().Before(deadline)) {
		t0 := time.Now()
		n, _, err := ScrapeOnce(ctx, base, accept, nil)
		if err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0).Seconds())
		size = n
	}
	s, _ := Summarize(lat)
	return s.Median, size, nil
}
