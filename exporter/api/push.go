// Package api holds the relay's HTTP handlers: one constructor per verb, each taking the
// store.Store it works on, in the manner of Pushgateway.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opview/opview/exporter/ingest"
	"github.com/opview/opview/exporter/store"
)

// PushPathPrefix is where the push API lives: PushPathPrefix + "job/<job>{/<label>/<value>}".
const PushPathPrefix = "/metrics/"

// Limits bound what one push may carry before it reaches the store, which applies its own.
type Limits struct {
	// MaxBodyBytes bounds the body, compressed and decompressed; 0 means no limit.
	MaxBodyBytes int64
	// MaxSeries (the store's limit per group; 0: none) stops decoding a body that surely
	// carries more series.
	MaxSeries int
	// MaxLabels (the store's labels per series; 0: none) stops decoding a text body at a line
	// that carries more.
	MaxLabels int
	// MaxBodyBytesFlag, MaxSeriesFlag and MaxLabelsFlag name the settings that raise the limits,
	// for refusals.
	MaxBodyBytesFlag, MaxSeriesFlag, MaxLabelsFlag string
}

// Instrumentation is the relay's own metrics about its HTTP API.
type Instrumentation struct {
	pushes         *prometheus.CounterVec
	pushDuration   *prometheus.HistogramVec
	scrapeDuration prometheus.Histogram
}

// NewInstrumentation creates the API's metrics and registers them with reg.
func NewInstrumentation(reg prometheus.Registerer) *Instrumentation {
	in := &Instrumentation{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opview_relay_pushes_total",
			Help: "Push requests (PUT, POST, DELETE) by method and HTTP status code.",
		}, []string{"method", "code"}),
		pushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                           "opview_relay_push_duration_seconds",
			Help:                           "Time to handle a push request, by method.",
			Buckets:                        []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
			NativeHistogramBucketFactor:    1.1,
			NativeHistogramMaxBucketNumber: 100,
		}, []string{"method"}),
		scrapeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                           "opview_relay_scrape_duration_seconds",
			Help:                           "Time to serve /metrics.",
			Buckets:                        []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
			NativeHistogramBucketFactor:    1.1,
			NativeHistogramMaxBucketNumber: 100,
		}),
	}
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
		in.pushDuration.WithLabelValues(m)
	}
	reg.MustRegister(in.pushes, in.pushDuration, in.scrapeDuration)
	return in
}

func (in *Instrumentation) observePush(method string, code int, start time.Time) {
	if in == nil {
		return
	}
	in.pushes.WithLabelValues(method, strconv.Itoa(code)).Inc()
	in.pushDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// Push handles PUT (replace true: the group is replaced) and POST (replace false: the families
// in the body replace the group's families of the same name). A refused push changes nothing
// and is answered with a 4xx whose body names the problem. Bodies are decoded at most a few at
// a time (gate), so that concurrent large pushes can't multiply the memory one push takes.
func Push(s store.Store, replace bool, lim Limits, gate *Gate, in *Instrumentation, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code := http.StatusOK
		defer func() { in.observePush(r.Method, code, start) }()

		key, err := ingest.GroupingKey(strings.TrimPrefix(r.URL.EscapedPath(), PushPathPrefix))
		if err != nil {
			s.RecordRefusal(store.Key{}, r.RemoteAddr, err)
			code = fail(w, logger, r, store.Key{}, err, lim)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), gateWait)
		release, err := gate.Enter(ctx, r.ContentLength, r.Header.Get("Content-Encoding"))
		cancel()
		if err != nil {
			code = http.StatusServiceUnavailable
			http.Error(w, "the relay is busy decoding other pushes; retry", code)
			return
		}
		defer release()
		// While the push holds its room in the gate, its body must keep coming: a client that
		// sends it slower than bodyMinRate would keep other pushes waiting for that room.
		if n := gate.Weight(r.ContentLength, r.Header.Get("Content-Encoding")); n > 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTime(n)))
		}
		body := r.Body
		if lim.MaxBodyBytes > 0 {
			body = http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes)
		}
		fams, err := ingest.Body(body, r.ContentLength, r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), lim.MaxBodyBytes, lim.MaxSeries, lim.MaxLabels)
		if err != nil {
			s.RecordRefusal(key, r.RemoteAddr, err)
		} else {
			_, err = s.Push(store.PushRequest{Key: key, Families: fams.Decoded, Encoded: fams.Encoded, Replace: replace, Client: r.RemoteAddr})
			fams.Release()
		}
		if err != nil {
			code = fail(w, logger, r, key, err, lim)
			return
		}
		w.WriteHeader(code)
	})
}

// Delete handles DELETE: the group goes away at once, samples and health series. Like
// Pushgateway it answers 202 whether or not the group existed.
func Delete(s store.Store, in *Instrumentation, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		key, err := ingest.GroupingKey(strings.TrimPrefix(r.URL.EscapedPath(), PushPathPrefix))
		if err != nil {
			code := fail(w, logger, r, store.Key{}, err, Limits{})
			in.observePush(r.Method, code, start)
			return
		}
		existed := s.Delete(key)
		logger.Debug("group deleted", "group", key.Excerpt(), "existed", existed, "client", r.RemoteAddr)
		w.WriteHeader(http.StatusAccepted)
		in.observePush(r.Method, http.StatusAccepted, start)
	})
}

// NoGroup answers a push to /metrics itself (the job forgotten in the URL): 400 saying what the
// URL must be, instead of the redirect to /metrics/ that leaves curl reporting success.
func NoGroup(in *Instrumentation) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		http.Error(w, "push URL must be /metrics/job/<job>{/<label>/<value>}: the job is missing", http.StatusBadRequest)
		in.observePush(r.Method, http.StatusBadRequest, start)
	})
}

// gateWait bounds how long a push waits for its turn to be decoded.
const gateWait = 30 * time.Second

// A push that holds its room in the gate has bodyBase, plus the time its size takes at
// bodyMinRate, to send its body (a maximum-size 16 MiB body: 21 s, below gateWait, so that one
// slow client alone can't make another push give up). A LAN or a VPN sends far faster.
var (
	bodyBase    = 5 * time.Second
	bodyMinRate = int64(1 << 20) // bytes per second
)

func bodyTime(n int64) time.Duration {
	return bodyBase + time.Duration(n)*time.Second/time.Duration(bodyMinRate)
}

// maxMessage bounds a refusal's message, in the answer and in the log.
const maxMessage = 1024

// fail answers a refused push and returns the status code.
func fail(w http.ResponseWriter, logger *slog.Logger, r *http.Request, key store.Key, err error, lim Limits) int {
	code := http.StatusBadRequest
	var se *store.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &se):
		switch se.Kind {
		case store.KindConflict:
			code = http.StatusConflict
		case store.KindTooLarge:
			code = http.StatusRequestEntityTooLarge
		case store.KindFull:
			code = http.StatusForbidden
		}
	case errors.As(err, &mbe):
		code = http.StatusRequestEntityTooLarge
		err = fmt.Errorf("push body larger than %d bytes%s", mbe.Limit, flagSuffix(lim.MaxBodyBytesFlag))
	case errors.Is(err, ingest.ErrTooManySeries):
		code = http.StatusRequestEntityTooLarge
		err = fmt.Errorf("push carries more than %d series, the limit per group%s", lim.MaxSeries, flagSuffix(lim.MaxSeriesFlag))
	case errors.Is(err, os.ErrDeadlineExceeded):
		code = http.StatusRequestTimeout
		err = fmt.Errorf("push body not received in time: once its turn to be decoded has come, a push body must arrive at %d KiB/s or more", bodyMinRate>>10)
	case errors.Is(err, ingest.ErrTooManyLabels):
		err = fmt.Errorf("%w%s", err, flagSuffix(lim.MaxLabelsFlag))
	case errors.Is(err, ingest.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
		err = fmt.Errorf("push body larger than %d bytes after decompression%s", lim.MaxBodyBytes, flagSuffix(lim.MaxBodyBytesFlag))
	}
	msg := store.Truncate(err.Error(), maxMessage)
	if !key.IsZero() {
		msg = fmt.Sprintf("push to group %s refused: %s", key.Excerpt(), msg)
	}
	logger.Info("push refused", "method", r.Method, "path", store.Truncate(r.URL.Path, 256), "client", r.RemoteAddr, "code", code, "err", msg)
	http.Error(w, msg, code)
	return code
}

func flagSuffix(flag string) string {
	if flag == "" {
		return ""
	}
	return " (" + flag + ")"
}
