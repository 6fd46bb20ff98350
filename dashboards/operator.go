package dashboards

import "fmt"

// Selectors of the operator dashboard. Every variable is multi-value, so every matcher is =~.
const (
	procSel = `job=~"$job",instance=~"$instance"`
	ctrlSel = `job=~"$job",instance=~"$instance",controller=~"$controller"`
)

// rate renders rate(<metric>{<sel>}[$__rate_interval]).
func rate(metric, sel string) string {
	return fmt.Sprintf("rate(%s{%s}[$__rate_interval])", metric, sel)
}

// quantile renders the q-quantile of a histogram grouped by the given labels. It reads classic
// buckets and falls back to native histograms, so it works whichever the scrape ingests.
func quantile(q, metric, sel, by string) string {
	withLe, native := "le", ""
	if by != "" {
		withLe, native = by+", le", " by ("+by+")"
	}
	return fmt.Sprintf("histogram_quantile(%s, sum by (%s) (%s))\nor\nhistogram_quantile(%s, sum%s (%s))",
		q, withLe, rate(metric+"_bucket", sel), q, native, rate(metric, sel))
}

// quantileTargets gives p50, p90 and p99 of a histogram, one target each.
func quantileTargets(metric, sel, by, legendPrefix string) []Target {
	var ts []Target
	for i, q := range []struct{ q, name string }{{"0.5", "p50"}, {"0.9", "p90"}, {"0.99", "p99"}} {
		legend := q.name
		if legendPrefix != "" {
			legend = legendPrefix + " " + q.name
		}
		ts = append(ts, Target{RefID: string(rune('A' + i)), Expr: quantile(q.q, metric, sel, by), LegendFormat: legend})
	}
	return ts
}

func ts(id uint32, title, unit, desc string, targets ...Target) panelSpec {
	return panelSpec{id: id, kind: kindTimeseries, title: title, unit: unit, description: desc, targets: targets}
}

func tgt(ref, expr, legend string) Target {
	return Target{RefID: ref, Expr: expr, LegendFormat: legend}
}

func operatorDashboard() dashboardSpec {
	reconcile := []panelSpec{
		ts(11, "Reconcile rate by result", "ops",
			"Reconciles per second per controller, split by result (success, error, requeue, requeue_after).",
			tgt("A", "sum by (controller, result) ("+rate("controller_runtime_reconcile_total", ctrlSel)+")", "{{controller}} {{result}}")),
		withRange(ts(12, "Error ratio per controller", "percentunit",
			"Share of reconciles that returned an error. No value while a controller does not reconcile.",
			tgt("A", "sum by (controller) ("+rate("controller_runtime_reconcile_errors_total", ctrlSel)+")\n/\nsum by (controller) ("+rate("controller_runtime_reconcile_total", ctrlSel)+")", "{{controller}}")), 0, 1),
		ts(13, "Errors, terminal errors, panics and timeouts", "ops",
			"Per controller: errors (retried with backoff), terminal errors (not retried), recovered panics and reconciles cut by ReconciliationTimeout.",
			tgt("A", "sum by (controller) ("+rate("controller_runtime_reconcile_errors_total", ctrlSel)+")", "{{controller}} errors"),
			tgt("B", "sum by (controller) ("+rate("controller_runtime_terminal_reconcile_errors_total", ctrlSel)+")", "{{controller}} terminal errors"),
			tgt("C", "sum by (controller) ("+rate("controller_runtime_reconcile_panics_total", ctrlSel)+")", "{{controller}} panics"),
			tgt("D", "sum by (controller) ("+rate("controller_runtime_reconcile_timeouts_total", ctrlSel)+")", "{{controller}} timeouts")),
		ts(14, "Reconcile time p50 / p90 / p99 per controller", "s",
			"Quantiles of the time spent in Reconcile, per controller (not stacked).",
			quantileTargets("controller_runtime_reconcile_time_seconds", ctrlSel, "controller", "{{controller}}")...),
		{id: 15, kind: kindHeatmap, title: "Reconcile time distribution", unit: "s", cellUnit: "ops",
			description: "Reconciles per second in each reconcile-time bucket, all selected controllers together.",
			targets: []Target{{RefID: "A", Format: "heatmap", LegendFormat: "{{le}}",
				Expr: "sum by (le) (" + rate("controller_runtime_reconcile_time_seconds_bucket", ctrlSel) + ")"}}},
		ts(16, "Active versus max workers", "short",
			"Workers busy in Reconcile against MaxConcurrentReconciles. Active at max for long means the controller is saturated.",
			tgt("A", "sum by (controller) (controller_runtime_active_workers{"+ctrlSel+"})", "{{controller}} active"),
			tgt("B", "sum by (controller) (controller_runtime_max_concurrent_reconciles{"+ctrlSel+"})", "{{controller}} max")),
	}
	workqueue := []panelSpec{
		ts(21, "Workqueue depth", "short",
			"Items waiting in each controller's queue (a gauge: summed over priorities, never rated).",
			tgt("A", "sum by (controller) (workqueue_depth{"+ctrlSel+"})", "{{controller}}")),
		ts(22, "Workqueue adds", "ops", "Items added to each queue per second.",
			tgt("A", "sum by (controller) ("+rate("workqueue_adds_total", ctrlSel)+")", "{{controller}}")),
		ts(23, "Workqueue retries", "ops", "Items re-added with backoff or RequeueAfter, per second.",
			tgt("A", "sum by (controller) ("+rate("workqueue_retries_total", ctrlSel)+")", "{{controller}}")),
		ts(24, "Queue latency p50 / p90 / p99", "s", "How long items wait in the queue before a worker picks them up.",
			quantileTargets("workqueue_queue_duration_seconds", ctrlSel, "controller", "{{controller}}")...),
		ts(25, "Work duration p50 / p90 / p99", "s", "How long processing an item takes.",
			quantileTargets("workqueue_work_duration_seconds", ctrlSel, "controller", "{{controller}}")...),
		ts(26, "Unfinished work and longest running processor", "s",
			"Seconds of work in progress not yet observed by work duration, and the age of the oldest item being processed. Growth means stuck workers.",
			tgt("A", "sum by (controller) (workqueue_unfinished_work_seconds{"+ctrlSel+"})", "{{controller}} unfinished work"),
			tgt("B", "max by (controller) (workqueue_longest_running_processor_seconds{"+ctrlSel+"})", "{{controller}} longest running")),
	}
	api := []panelSpec{
		ts(31, "API requests by code", "reqps", "Requests of the operator's Kubernetes clients per second, by HTTP status code.",
			tgt("A", "sum by (code) ("+rate("rest_client_requests_total", procSel)+")", "{{code}}")),
		ts(32, "API requests by method", "reqps", "Requests per second by HTTP method.",
			tgt("A", "sum by (method) ("+rate("rest_client_requests_total", procSel)+")", "{{method}}")),
		ts(33, "Failed API requests", "reqps", "Requests that did not get a 2xx answer, by method and code (\"<error>\" = no answer).",
			tgt("A", "sum by (method, code) ("+rate("rest_client_requests_total", procSel+`,code!~"2.."`)+")", "{{method}} {{code}}")),
	}
	webhooks := []panelSpec{
		ts(41, "Webhook requests by code", "reqps", "Admission and conversion webhook requests per second, by path and HTTP code.",
			tgt("A", "sum by (webhook, code) ("+rate("controller_runtime_webhook_requests_total", procSel)+")", "{{webhook}} {{code}}")),
		ts(42, "Webhook latency p50 / p90 / p99", "s", "Time to answer a webhook request, per path.",
			quantileTargets("controller_runtime_webhook_latency_seconds", procSel, "webhook", "{{webhook}}")...),
		ts(43, "Webhook requests in flight", "short", "Requests being served right now, per path.",
			tgt("A", "sum by (webhook) (controller_runtime_webhook_requests_in_flight{"+procSel+"})", "{{webhook}}")),
		ts(44, "Webhook panics and certificate reloads", "ops",
			"Recovered webhook panics, and the certificate watcher's reads (and failed reads) of the serving certificate.",
			tgt("A", "sum("+rate("controller_runtime_webhook_panics_total", procSel)+")", "webhook panics"),
			tgt("B", "sum("+rate("certwatcher_read_certificate_total", procSel)+")", "certificate reads"),
			tgt("C", "sum("+rate("certwatcher_read_certificate_errors_total", procSel)+")", "certificate read errors")),
	}
	leader := []panelSpec{
		withRange(ts(51, "Leader per lease", "bool_yes_no",
			"1 on the replica that holds the lease named by `name`, 0 on standbys. Exactly one leader per lease is healthy.",
			tgt("A", `max by (name, job, instance) (leader_election_master_status{`+procSel+`})`, "{{name}} {{job}} {{instance}}")), 0, 1),
		withRange(ts(52, "Leaders per lease", "short",
			"Replicas that think they lead each lease: 0 means nobody reconciles, more than 1 means split brain.",
			tgt("A", `sum by (name) (leader_election_master_status{`+procSel+`})`, "{{name}}")), 0, 0),
	}
	runtime := []panelSpec{
		ts(61, "CPU (1 = one core)", "percentunit", "CPU time used per second.",
			tgt("A", "sum by (job, instance) ("+rate("process_cpu_seconds_total", procSel)+")", "{{job}} {{instance}}")),
		ts(62, "Memory", "bytes", "Resident set size, Go heap in use and goroutine stacks.",
			tgt("A", "sum by (job, instance) (process_resident_memory_bytes{"+procSel+"})", "{{job}} {{instance}} resident"),
			tgt("B", "sum by (job, instance) (go_memstats_heap_inuse_bytes{"+procSel+"})", "{{job}} {{instance}} heap in use"),
			tgt("C", "sum by (job, instance) (go_memstats_stack_inuse_bytes{"+procSel+"})", "{{job}} {{instance}} stacks")),
		ts(63, "Goroutines and threads", "short", "Goroutines and OS threads of the process.",
			tgt("A", "sum by (job, instance) (go_goroutines{"+procSel+"})", "{{job}} {{instance}} goroutines"),
			tgt("B", "sum by (job, instance) (go_threads{"+procSel+"})", "{{job}} {{instance}} threads")),
		// Prometheus 3 ingests a summary's quantile="1" as "1.0" (normalised whatever the scrape
		// protocol); Prometheus 2 keeps "1" from the text format. Match both.
		ts(64, "GC pause", "s", "Longest and mean stop-the-world GC pause.",
			tgt("A", `max by (job, instance) (go_gc_duration_seconds{`+procSel+`,quantile=~"1|1\\.0"})`, "{{job}} {{instance}} max pause"),
			tgt("B", "sum by (job, instance) ("+rate("go_gc_duration_seconds_sum", procSel)+")\n/\nsum by (job, instance) ("+rate("go_gc_duration_seconds_count", procSel)+")", "{{job}} {{instance}} mean pause")),
		ts(65, "GC cycles", "ops", "Garbage collections per second.",
			tgt("A", "sum by (job, instance) ("+rate("go_gc_duration_seconds_count", procSel)+")", "{{job}} {{instance}}")),
		ts(66, "Scheduler latency p99", "s", "99th percentile of the time goroutines wait to run (runtime/metrics /sched/latencies).",
			tgt("A", "histogram_quantile(0.99, sum by (job, instance, le) ("+rate("go_sched_latencies_seconds_bucket", procSel)+"))", "{{job}} {{instance}}")),
		ts(67, "Open file descriptors", "short", "Open file descriptors against the process limit.",
			tgt("A", "sum by (job, instance) (process_open_fds{"+procSel+"})", "{{job}} {{instance}} open"),
			tgt("B", "sum by (job, instance) (process_max_fds{"+procSel+"})", "{{job}} {{instance}} limit")),
	}
	overview := []panelSpec{
		statPanel(2, "Reconciles", "ops", "Reconciles per second, selected controllers.",
			tgt("A", "sum("+rate("controller_runtime_reconcile_total", ctrlSel)+")", "reconciles/s")),
		withRange(statPanel(3, "Error ratio", "percentunit", "Share of reconciles that failed.",
			tgt("A", "sum("+rate("controller_runtime_reconcile_errors_total", ctrlSel)+")\n/\nsum("+rate("controller_runtime_reconcile_total", ctrlSel)+")", "error ratio")), 0, 1),
		statPanel(4, "Reconcile p99", "s", "99th percentile reconcile time, selected controllers.",
			Target{RefID: "A", Expr: quantile("0.99", "controller_runtime_reconcile_time_seconds", ctrlSel, ""), LegendFormat: "p99"}),
		statPanel(5, "Queued items", "short", "Items waiting in the selected controllers' queues.",
			tgt("A", "sum(workqueue_depth{"+ctrlSel+"})", "queued")),
		withRange(statPanel(6, "Worker utilisation", "percentunit", "Active workers over MaxConcurrentReconciles.",
			tgt("A", "sum(controller_runtime_active_workers{"+ctrlSel+"})\n/\nsum(controller_runtime_max_concurrent_reconciles{"+ctrlSel+"})", "busy workers")), 0, 1),
		statPanel(7, "Leaders", "short", "Selected replicas that hold a leader lease.",
			tgt("A", "sum(leader_election_master_status{"+procSel+"})", "leaders")),
	}
	for i := range overview {
		overview[i].w, overview[i].h = 4, 4
	}
	for _, ps := range [][]panelSpec{reconcile, workqueue, api, webhooks, leader, runtime} {
		for i := range ps {
			ps[i].w = 8
			ps[i].h = 8
		}
	}
	for _, i := range []int{0, 3} {
		reconcile[i].w = 12
	}
	reconcile[1].w, reconcile[2].w = 12, 12
	reconcile[4].w, reconcile[5].w = 12, 12
	leader[0].w, leader[1].w = 12, 12
	runtime[6].w = 24

	return dashboardSpec{
		uid:   OperatorUID,
		title: "opview / controller-runtime operator",
		file:  "opview-operator.json",
		description: "Every metric family a controller-runtime operator exposes: reconciles, errors, latency, workers, " +
			"workqueues, Kubernetes API client, webhooks, leader election and the Go process. Generated by opview (dashboards/).",
		tags: []string{"opview", "controller-runtime", "kubernetes", "operator"},
		variables: []Variable{
			{Name: "job", Query: "label_values(controller_runtime_reconcile_total, job)", Multi: true, IncludeAll: true, AllValue: AllValue},
			{Name: "instance", Query: `label_values(controller_runtime_reconcile_total{job=~"$job"}, instance)`, Multi: true, IncludeAll: true, AllValue: AllValue},
			{Name: "controller", Query: `label_values(controller_runtime_reconcile_total{job=~"$job",instance=~"$instance"}, controller)`, Multi: true, IncludeAll: true, AllValue: AllValue},
		},
		rows: []rowSpec{
			{id: 1, title: "Overview", panels: overview},
			{id: 10, title: "Reconciliation (per controller)", panels: reconcile},
			{id: 20, title: "Workqueue (per controller)", panels: workqueue},
			{id: 30, title: "Kubernetes API client", panels: api},
			{id: 40, title: "Webhooks", panels: webhooks, collapsed: true},
			{id: 50, title: "Leader election", panels: leader, collapsed: true},
			{id: 60, title: "Process and Go runtime", panels: runtime},
		},
	}
}

func statPanel(id uint32, title, unit, desc string, targets ...Target) panelSpec {
	return panelSpec{id: id, kind: kindStat, title: title, unit: unit, description: desc, targets: targets}
}

// withRange sets min and max; max <= min means "min only".
func withRange(p panelSpec, min, max float64) panelSpec {
	p.min = f64(min)
	if max > min {
		p.max = f64(max)
	}
	return p
}
