// Package api holds the relay's HTTP handlers: one constructor per verb, each taking the
// store.Store it works on, in the manner of Pushgateway.
package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opview/opview/exporter/ingest"
	"github.com/opview/opview/exporter/store"
)

// PushPathPrefix is where the push API lives: PushPathPrefix + "job/<job>{/<label>/<value>}".
const PushPathPrefix = "/metrics/"

// Limits bound what one push may carry.
type Limits struct {
	// MaxBodyBytes bounds the body, compressed and decompressed; 0 means no limit.
	MaxBodyBytes int64
	// MaxSeries bounds the series of one group; 0 means no limit.
	MaxSeries int
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
// and is answered with a 4xx whose body names the problem.
func Push(s store.Store, replace bool, lim Limits, in *Instrumentation, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code := http.StatusOK
		defer func() { in.observePush(r.Method, code, start) }()

		key, err := ingest.GroupingKey(strings.TrimPrefix(r.URL.EscapedPath(), PushPathPrefix))
		if err != nil {
			code = fail(w, logger, r, store.Key{}, err)
			return
		}
		body := r.Body
		if lim.MaxBodyBytes > 0 {
			body = http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes)
		}
		fams, err := ingest.Body(body, r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), lim.MaxBodyBytes)
		if err == nil {
			var p *store.Push
			if p, err = store.Prepare(key, fams, lim.MaxSeries); err == nil {
				err = s.Apply(p, replace)
			}
		}
		if err != nil {
			s.RecordFailure(key, err.Error())
			code = fail(w, logger, r, key, err)
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
			code := fail(w, logger, r, store.Key{}, err)
			in.observePush(r.Method, code, start)
			return
		}
		existed := s.Delete(key)
		logger.Debug("group deleted", "group", key.String(), "existed", existed)
		w.WriteHeader(http.StatusAccepted)
		in.observePush(r.Method, http.StatusAccepted, start)
	})
}

// fail answers a refused push and returns the status code.
func fail(w http.ResponseWriter, logger *slog.Logger, r *http.Request, key store.Key, err error) int {
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
		err = fmt.Errorf("push body larger than %d bytes (--push.max-body-bytes)", mbe.Limit)
	case errors.Is(err, ingest.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
		err = fmt.Errorf("push body larger than the limit after decompression (--push.max-body-bytes)")
	}
	logger.Info("push refused", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	msg := err.Error()
	if key.String() != "{}" {
		msg = fmt.Sprintf("push to group %s refused: %s", key, msg)
	}
	http.Error(w, msg, code)
	return code
}
