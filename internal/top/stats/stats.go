// Package stats reads what a controller-runtime operator exposes (reconciles, workqueues, API
// client, leader election, webhooks, process) out of a window of scrapes: rates and quantiles over
// the window, as the terminal view shows them. It knows metric names, not screens.
package stats

import (
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/opview/opview/internal/top/window"
)

// The metric families the view reads; the window keeps only these.
const (
	reconcileTotal     = "controller_runtime_reconcile_total"
	reconcileErrors    = "controller_runtime_reconcile_errors_total"
	terminalErrors     = "controller_runtime_terminal_reconcile_errors_total"
	reconcilePanics    = "controller_runtime_reconcile_panics_total"
	reconcileTime      = "controller_runtime_reconcile_time_seconds"
	maxReconciles      = "controller_runtime_max_concurrent_reconciles"
	activeWorkers      = "controller_runtime_active_workers"
	queueDepth         = "workqueue_depth"
	queueAdds          = "workqueue_adds_total"
	queueDuration      = "workqueue_queue_duration_seconds"
	workDuration       = "workqueue_work_duration_seconds"
	queueRetries       = "workqueue_retries_total"
	unfinishedWork     = "workqueue_unfinished_work_seconds"
	longestRunning     = "workqueue_longest_running_processor_seconds"
	restRequests       = "rest_client_requests_total"
	leaderStatus       = "leader_election_master_status"
	webhookRequests    = "controller_runtime_webhook_requests_total"
	webhookLatency     = "controller_runtime_webhook_latency_seconds"
	webhookInFlight    = "controller_runtime_webhook_requests_in_flight"
	cpuSeconds         = "process_cpu_seconds_total"
	residentMemory     = "process_resident_memory_bytes"
	openFDs            = "process_open_fds"
	maxFDs             = "process_max_fds"
	goroutines         = "go_goroutines"
	threads            = "go_threads"
	gcDuration         = "go_gc_duration_seconds"
	heapAlloc          = "go_memstats_heap_alloc_bytes"
	startTimeSeconds   = "process_start_time_seconds"
	controllerLabel    = "controller"
	workqueueNameLabel = "name"
)

// Families lists every metric family the view reads.
var Families = []string{
	reconcileTotal, reconcileErrors, terminalErrors, reconcilePanics, reconcileTime, maxReconciles,
	activeWorkers, queueDepth, queueAdds, queueDuration, workDuration, queueRetries, unfinishedWork,
	longestRunning, restRequests, leaderStatus, webhookRequests, webhookLatency, webhookInFlight,
	cpuSeconds, residentMemory, openFDs, maxFDs, goroutines, threads, gcDuration, heapAlloc, startTimeSeconds,
}

// NaN marks a value the window cannot give (no such series, or too few scrapes for a rate).
var NaN = math.NaN()

// Controller is one row of the controllers table. Rates are per second over the window,
// quantiles in seconds; NaN where unknown.
type Controller struct {
	Name          string
	Reconciles    float64 // reconciles per second, all results
	ErrorRatio    float64 // errors / reconciles, 0..1
	P50, P99      float64 // reconcile time
	Active, Max   float64 // workers busy, max concurrent reconciles
	Depth         float64 // workqueue depth now
	QueueP99      float64 // time in the queue before a worker takes the item
	RetriesPerSec float64
}

// Columns of the controllers table, in order; the view sorts by any of them.
const (
	ColName = iota
	ColReconciles
	ColErrors
	ColP50
	ColP99
	ColWorkers
	ColDepth
	ColQueueP99
	ColRetries
	NumColumns
)

// Value returns the row's value in column col (for sorting; workers sort by active).
func (c Controller) Value(col int) float64 {
	switch col {
	case ColReconciles:
		return c.Reconciles
	case ColErrors:
		return c.ErrorRatio
	case ColP50:
		return c.P50
	case ColP99:
		return c.P99
	case ColWorkers:
		return c.Active
	case ColDepth:
		return c.Depth
	case ColQueueP99:
		return c.QueueP99
	case ColRetries:
		return c.RetriesPerSec
	}
	return 0
}

// Sort orders rows by column col (names ascending; numbers descending, unknown last), then by name.
func Sort(rows []Controller, col int, reverse bool) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if col != ColName {
			va, vb := a.Value(col), b.Value(col)
			na, nb := math.IsNaN(va), math.IsNaN(vb)
			switch {
			case na && !nb:
				return false
			case nb && !na:
				return true
			case !na && va != vb:
				return (va > vb) != reverse
			}
			return a.Name < b.Name
		}
		return (a.Name < b.Name) != reverse
	})
}

// Filter keeps the rows whose name contains sub (case-insensitive).
func Filter(rows []Controller, sub string) []Controller {
	if sub == "" {
		return rows
	}
	sub = strings.ToLower(sub)
	var out []Controller
	for _, r := range rows {
		if strings.Contains(strings.ToLower(r.Name), sub) {
			out = append(out, r)
		}
	}
	return out
}

// HasRates tells whether the window holds two scrapes or more, so that rates exist. With one
// scrape, quantiles are computed from the counts since the process started.
func HasRates(w *window.Window) bool { return w.Len() >= 2 }

// ControllerNames returns the controllers the operator exposes: those with reconcile metrics
// and those with a workqueue.
func ControllerNames(w *window.Window) []string {
	var names []string
	for _, fam := range []struct{ name, label string }{
		{reconcileTotal, controllerLabel}, {activeWorkers, controllerLabel}, {maxReconciles, controllerLabel},
		{reconcileTime + "_count", controllerLabel}, {queueDepth, workqueueNameLabel}, {queueAdds, workqueueNameLabel},
	} {
		for _, v := range w.LabelValues(fam.name, fam.label) {
			if !slices.Contains(names, v) {
				names = append(names, v)
			}
		}
	}
	slices.Sort(names)
	return names
}

// Controllers returns one row per controller, sorted by name.
func Controllers(w *window.Window) []Controller {
	var rows []Controller
	for _, name := range ControllerNames(w) {
		rows = append(rows, controller(w, name))
	}
	return rows
}

func controller(w *window.Window, name string) Controller {
	c := window.Match{controllerLabel: name}
	q := window.Match{workqueueNameLabel: name}
	return Controller{
		Name:          name,
		Reconciles:    rateOf(w, reconcileTotal, c),
		ErrorRatio:    errorRatio(w, c),
		P50:           quantile(w, 0.5, reconcileTime, c),
		P99:           quantile(w, 0.99, reconcileTime, c),
		Active:        sum(w, activeWorkers, c),
		Max:           sum(w, maxReconciles, c),
		Depth:         sum(w, queueDepth, q),
		QueueP99:      quantile(w, 0.99, queueDuration, q),
		RetriesPerSec: rateOf(w, queueRetries, q),
	}
}

func rateOf(w *window.Window, name string, m window.Match) float64 {
	if v, ok := w.Rate(name, m); ok {
		return v
	}
	return NaN
}

func sum(w *window.Window, name string, m window.Match) float64 {
	if v, ok := w.Sum(name, m); ok {
		return v
	}
	return NaN
}

func errorRatio(w *window.Window, c window.Match) float64 {
	total := rateOf(w, reconcileTotal, c)
	errs := rateOf(w, reconcileErrors, c)
	if math.IsNaN(errs) {
		errs = rateOf(w, reconcileTotal, window.Match{controllerLabel: c[controllerLabel], "result": "error"})
	}
	if math.IsNaN(total) || math.IsNaN(errs) || total == 0 {
		return NaN
	}
	return errs / total
}

// quantile is histogram_quantile over the window, or over the counts since the process started
// while the window holds a single scrape.
func quantile(w *window.Window, q float64, name string, m window.Match) float64 {
	if HasRates(w) {
		return w.Quantile(q, name, m)
	}
	return window.BucketQuantile(q, w.BucketTotals(name, m))
}

// Bucket is one bucket of the reconcile-time histogram: observations with a duration in
// (Lower, Upper] seen inside the window, and their share of all.
type Bucket struct {
	Lower, Upper float64
	Count        float64
	Share        float64 // 0..1
}

// Result is the reconciles of one result label (success, error, requeue, requeue_after).
type Result struct {
	Name  string
	Rate  float64 // per second over the window
	Count float64 // seen inside the window
	Share float64 // of all reconciles in the window, 0..1
}

// Detail is the controller detail screen's data.
type Detail struct {
	Controller
	P90                       float64
	QueueP50, QueueP90        float64
	WorkP50, WorkP99          float64
	Unfinished, Longest       float64 // seconds of work in progress, longest running worker
	AddsPerSec                float64
	Panics, Terminal          float64 // seen inside the window
	Observations              float64 // reconcile-time observations inside the window
	Buckets                   []Bucket
	Results                   []Result
	RateSteps, ErrorSteps     []float64 // per scrape interval, over the window
	DepthValues, ActiveValues []float64 // per scrape, over the window
	SinceStart                bool      // one scrape only: buckets and results are totals since start
}

// ControllerDetail returns the detail of one controller.
func ControllerDetail(w *window.Window, name string) Detail {
	c := window.Match{controllerLabel: name}
	q := window.Match{workqueueNameLabel: name}
	d := Detail{
		Controller: controller(w, name),
		P90:        quantile(w, 0.9, reconcileTime, c),
		QueueP50:   quantile(w, 0.5, queueDuration, q),
		QueueP90:   quantile(w, 0.9, queueDuration, q),
		WorkP50:    quantile(w, 0.5, workDuration, q),
		WorkP99:    quantile(w, 0.99, workDuration, q),
		Unfinished: sum(w, unfinishedWork, q),
		Longest:    sum(w, longestRunning, q),
		AddsPerSec: rateOf(w, queueAdds, q),
		SinceStart: !HasRates(w),
	}
	count := func(name string, m window.Match) float64 {
		if d.SinceStart {
			return sum(w, name, m)
		}
		if v, ok := w.Increase(name, m); ok {
			return v
		}
		return NaN
	}
	d.Panics = count(reconcilePanics, c)
	d.Terminal = count(terminalErrors, c)

	var cum []window.Bucket
	if d.SinceStart {
		cum = w.BucketTotals(reconcileTime, c)
	} else {
		cum = w.BucketIncreases(reconcileTime, c)
	}
	if n := len(cum); n > 0 {
		d.Observations = cum[n-1].Count
	}
	prev, lower := 0.0, 0.0
	for _, b := range cum {
		n := max(0, b.Count-prev) // a bucket below its predecessor (inconsistent scrape) counts 0
		prev = max(prev, b.Count)
		share := 0.0
		if d.Observations > 0 {
			share = n / d.Observations
		}
		d.Buckets = append(d.Buckets, Bucket{Lower: lower, Upper: b.UpperBound, Count: n, Share: share})
		lower = b.UpperBound
	}

	var all float64
	for _, r := range w.LabelValues(reconcileTotal, "result") {
		m := window.Match{controllerLabel: name, "result": r}
		if len(w.Select(reconcileTotal, m)) == 0 {
			continue
		}
		res := Result{Name: r, Rate: rateOf(w, reconcileTotal, m), Count: count(reconcileTotal, m)}
		if !math.IsNaN(res.Count) {
			all += res.Count
		}
		d.Results = append(d.Results, res)
	}
	slices.SortStableFunc(d.Results, func(a, b Result) int { return resultRank(a.Name) - resultRank(b.Name) })
	for i := range d.Results {
		if all > 0 && !math.IsNaN(d.Results[i].Count) {
			d.Results[i].Share = d.Results[i].Count / all
		}
	}
	d.RateSteps = w.Steps(reconcileTotal, c)
	d.ErrorSteps = w.Steps(reconcileErrors, c)
	d.DepthValues = w.Values(queueDepth, q)
	d.ActiveValues = w.Values(activeWorkers, c)
	return d
}

// Request is the API client's requests with one code and method.
type Request struct {
	Code, Method string
	Rate         float64 // per second over the window
	Total        float64 // since the process started
}

// Webhook is one admission webhook's traffic.
type Webhook struct {
	Name       string
	Rate       float64
	ErrorRatio float64 // non-2xx share
	P99        float64
	InFlight   float64
}

// Leader is one leader election lock and whether this process holds it.
type Leader struct {
	Name   string
	Leader bool
}

// Process is the process screen's data.
type Process struct {
	Requests                []Request
	Leaders                 []Leader
	Webhooks                []Webhook
	RSS, HeapAlloc          float64 // bytes
	CPU                     float64 // cores (CPU seconds per second)
	Goroutines, Threads     float64
	OpenFDs, MaxFDs         float64
	GCPerSec                float64
	GCPauseP50, GCPauseMax  float64 // seconds, from the runtime's summary (since start)
	StartTime               float64 // Unix seconds
	RSSValues, GoroutineVal []float64
	CPUSteps                []float64
}

// ProcessStats returns the process screen's data.
func ProcessStats(w *window.Window) Process {
	p := Process{
		RSS:          sum(w, residentMemory, nil),
		HeapAlloc:    sum(w, heapAlloc, nil),
		CPU:          rateOf(w, cpuSeconds, nil),
		Goroutines:   sum(w, goroutines, nil),
		Threads:      sum(w, threads, nil),
		OpenFDs:      sum(w, openFDs, nil),
		MaxFDs:       sum(w, maxFDs, nil),
		GCPerSec:     rateOf(w, gcDuration+"_count", nil),
		GCPauseP50:   NaN,
		GCPauseMax:   NaN,
		StartTime:    sum(w, startTimeSeconds, nil),
		RSSValues:    w.Values(residentMemory, nil),
		GoroutineVal: w.Values(goroutines, nil),
		CPUSteps:     w.Steps(cpuSeconds, nil),
	}
	for _, s := range w.Select(gcDuration, nil) {
		switch s.LE {
		case 0.5:
			p.GCPauseP50 = w.Latest(s)
		case 1:
			p.GCPauseMax = w.Latest(s)
		}
	}
	for _, s := range w.Select(restRequests, nil) {
		code, method := s.Label("code"), s.Label("method")
		i := slices.IndexFunc(p.Requests, func(r Request) bool { return r.Code == code && r.Method == method })
		if i < 0 {
			p.Requests = append(p.Requests, Request{Code: code, Method: method, Rate: rateOf(w, restRequests, window.Match{"code": code, "method": method})})
			i = len(p.Requests) - 1
		}
		p.Requests[i].Total += w.Latest(s)
	}
	slices.SortFunc(p.Requests, func(a, b Request) int {
		if c := strings.Compare(a.Method, b.Method); c != 0 {
			return c
		}
		return strings.Compare(a.Code, b.Code)
	})
	for _, s := range w.Select(leaderStatus, nil) {
		p.Leaders = append(p.Leaders, Leader{Name: s.Label("name"), Leader: w.Latest(s) == 1})
	}
	names := w.LabelValues(webhookRequests+"", "webhook")
	for _, n := range w.LabelValues(webhookLatency+"_count", "webhook") {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		m := window.Match{"webhook": n}
		wh := Webhook{Name: n, Rate: rateOf(w, webhookRequests, m), ErrorRatio: NaN,
			P99: quantile(w, 0.99, webhookLatency, m), InFlight: sum(w, webhookInFlight, m)}
		var bad float64
		var anyBad bool
		for _, s := range w.Select(webhookRequests, m) {
			if !strings.HasPrefix(s.Label("code"), "2") {
				if r, ok := w.Rate(webhookRequests, window.Match{"webhook": n, "code": s.Label("code")}); ok {
					bad, anyBad = bad+r, true
				}
			}
		}
		if wh.Rate > 0 {
			wh.ErrorRatio = 0
			if anyBad {
				wh.ErrorRatio = bad / wh.Rate
			}
		}
		p.Webhooks = append(p.Webhooks, wh)
	}
	return p
}

// resultRank orders controller-runtime's results as its docs list them; unknown ones go last.
func resultRank(r string) int {
	if i := slices.Index([]string{"success", "error", "requeue", "requeue_after"}, r); i >= 0 {
		return i
	}
	return 4
}
