package dashboards

// Selectors of the relay dashboard. The relay's own metrics carry the job and instance of the scrape
// that reads the relay ($job, $instance). Its per-group health series carry the group's grouping
// labels instead (honor_labels), so they are selected by $group; pull-source series are labelled
// job=<source name> and selected by $source.
const (
	relaySel  = `job=~"$job",instance=~"$instance"`
	groupSel  = `job=~"$group"`
	sourceSel = `job=~"$source"`
)

func relayDashboard() dashboardSpec {
	overview := []panelSpec{
		statPanel(2, "Groups", "short", "Push groups the relay holds (fresh or expired but not yet forgotten).",
			tgt("A", "sum(opview_relay_groups{"+relaySel+"})", "groups")),
		statPanel(3, "Fresh groups", "short", "Selected groups that pushed within --group.ttl.",
			tgt("A", "sum(opview_relay_group_fresh{"+groupSel+"})", "fresh groups")),
		statPanel(4, "Series", "short", "Series the relay exposes for its groups.",
			tgt("A", "sum(opview_relay_series{"+relaySel+"})", "series")),
		statPanel(5, "Oldest push", "s", "Time since the least recent successful push among the selected groups.",
			tgt("A", "max(time() - push_time_seconds{"+groupSel+"})", "oldest push")),
		statPanel(6, "Push failures", "ops", "Failed pushes per second, selected groups.",
			tgt("A", "sum("+rate("opview_relay_group_push_failures_total", groupSel)+")", "failures/s")),
		statPanel(7, "Pull sources up", "short", "Pull sources whose last scrape succeeded, out of all configured.",
			tgt("A", "sum(opview_relay_source_up{"+sourceSel+"})", "up"),
			tgt("B", "count(opview_relay_source_up{"+sourceSel+"})", "configured")),
	}
	for i := range overview {
		overview[i].w, overview[i].h = 4, 4
	}

	groupTable := panelSpec{id: 11, kind: kindTable, title: "Groups and their freshness", unit: "short", w: 24, h: 8,
		description: "One line per push group (job, instance): time since its last successful push, whether it is " +
			"still served, its series, and time since its last failed push (empty if none).",
		targets: []Target{
			{RefID: "A", Instant: true, Format: "table", LegendFormat: "{{job}} {{instance}} last push",
				Expr: "time() - max by (job, instance) (push_time_seconds{" + groupSel + "})"},
			{RefID: "B", Instant: true, Format: "table", LegendFormat: "{{job}} {{instance}} fresh",
				Expr: "max by (job, instance) (opview_relay_group_fresh{" + groupSel + "})"},
			{RefID: "C", Instant: true, Format: "table", LegendFormat: "{{job}} {{instance}} series",
				Expr: "max by (job, instance) (opview_relay_group_series{" + groupSel + "})"},
			{RefID: "D", Instant: true, Format: "table", LegendFormat: "{{job}} {{instance}} last failure",
				Expr: "time() - max by (job, instance) (push_failure_time_seconds{" + groupSel + "} > 0)"},
		},
		columns: []column{
			{refID: "A", name: "since last push", unit: "s"},
			{refID: "B", name: "served", unit: "bool_yes_no"},
			{refID: "C", name: "series", unit: "short"},
			{refID: "D", name: "since last failure", unit: "s"},
		},
	}
	groups := []panelSpec{
		groupTable,
		ts(12, "Time since last push", "s", "Per group. A line that keeps rising means the pusher stopped.",
			tgt("A", "time() - max by (job, instance) (push_time_seconds{"+groupSel+"})", "{{job}} {{instance}}")),
		withRange(ts(13, "Group served", "bool_yes_no", "1 while the group is exposed, 0 once it expired (until forgotten).",
			tgt("A", "max by (job, instance) (opview_relay_group_fresh{"+groupSel+"})", "{{job}} {{instance}}")), 0, 1),
		ts(14, "Series per group", "short", "Series stored for each group (bounded by --group.max-series).",
			tgt("A", "max by (job, instance) (opview_relay_group_series{"+groupSel+"})", "{{job}} {{instance}}")),
		ts(15, "Pushes and failures per group", "reqps", "Accepted and rejected pushes per second, per group.",
			tgt("A", "sum by (job, instance) ("+rate("opview_relay_group_pushes_total", groupSel)+")", "{{job}} {{instance}} pushes"),
			tgt("B", "sum by (job, instance) ("+rate("opview_relay_group_push_failures_total", groupSel)+")", "{{job}} {{instance}} failures")),
	}
	for i := 1; i < len(groups); i++ {
		groups[i].w, groups[i].h = 12, 8
	}

	push := []panelSpec{
		ts(21, "Push requests by method and code", "reqps", "Requests to the push API per second.",
			tgt("A", "sum by (method, code) ("+rate("opview_relay_pushes_total", relaySel)+")", "{{method}} {{code}}")),
		ts(22, "Push latency p50 / p90 / p99", "s", "Time to accept a push, per HTTP method.",
			quantileTargets("opview_relay_push_duration_seconds", relaySel, "method", "{{method}}")...),
		ts(23, "Exposition latency p50 / p90 / p99", "s", "Time to serve the relay's /metrics to Prometheus.",
			quantileTargets("opview_relay_scrape_duration_seconds", relaySel, "", "")...),
		ts(24, "Stored groups and series", "short", "Size of the relay's store.",
			tgt("A", "sum by (job, instance) (opview_relay_groups{"+relaySel+"})", "{{job}} {{instance}} groups"),
			tgt("B", "sum by (job, instance) (opview_relay_series{"+relaySel+"})", "{{job}} {{instance}} series")),
		ts(25, "Groups expiring", "ops", "Groups that went quiet for longer than --group.ttl, per second.",
			tgt("A", "sum by (job, instance) ("+rate("opview_relay_groups_expired_total", relaySel)+")", "{{job}} {{instance}} expired")),
		ts(26, "Relay build", "short", "Running relay versions (1 per relay).",
			tgt("A", "sum by (version, revision) (opview_relay_build_info{"+relaySel+"})", "{{version}} {{revision}}")),
		ts(27, "Store memory and its budget", "bytes", "Memory the stored groups take, as the relay counts it, against its byte budget "+
			"(--store.max-bytes, a quarter of the container's memory limit in the bundle): pushes that would pass it are refused with 413.",
			tgt("A", "sum by (job, instance) (opview_relay_store_bytes{"+relaySel+"})", "{{job}} {{instance}} stored"),
			tgt("B", "sum by (job, instance) (opview_relay_store_budget_bytes{"+relaySel+"})", "{{job}} {{instance}} budget")),
	}
	for i := range push {
		push[i].w, push[i].h = 8, 8
	}

	sources := []panelSpec{
		withRange(ts(31, "Pull source up", "bool_yes_no", "1 when the last scrape of the source succeeded.",
			tgt("A", "max by (job, instance) (opview_relay_source_up{"+sourceSel+"})", "{{job}} {{instance}}")), 0, 1),
		ts(32, "Scrape duration", "s", "Duration of the last scrape of each source.",
			tgt("A", "max by (job, instance) (opview_relay_source_scrape_duration_seconds{"+sourceSel+"})", "{{job}} {{instance}}")),
		ts(33, "Scrape errors", "ops", "Failed scrapes per second.",
			tgt("A", "sum by (job, instance) ("+rate("opview_relay_source_scrape_errors_total", sourceSel)+")", "{{job}} {{instance}}")),
		ts(34, "Time since last scrape", "s", "Seconds since the relay last scraped each source.",
			tgt("A", "time() - max by (job, instance) (opview_relay_source_last_scrape_timestamp_seconds{"+sourceSel+"})", "{{job}} {{instance}}")),
	}
	for i := range sources {
		sources[i].w, sources[i].h = 12, 8
	}

	process := []panelSpec{
		ts(41, "Relay CPU (1 = one core)", "percentunit", "CPU time used per second.",
			tgt("A", "sum by (job, instance) ("+rate("process_cpu_seconds_total", relaySel)+")", "{{job}} {{instance}}")),
		ts(42, "Relay memory", "bytes", "Resident set size and Go heap in use.",
			tgt("A", "sum by (job, instance) (process_resident_memory_bytes{"+relaySel+"})", "{{job}} {{instance}} resident"),
			tgt("B", "sum by (job, instance) (go_memstats_heap_inuse_bytes{"+relaySel+"})", "{{job}} {{instance}} heap in use")),
		ts(43, "Relay goroutines", "short", "Goroutines of the relay.",
			tgt("A", "sum by (job, instance) (go_goroutines{"+relaySel+"})", "{{job}} {{instance}}")),
	}
	for i := range process {
		process[i].w, process[i].h = 8, 8
	}

	return dashboardSpec{
		uid:   RelayUID,
		title: "opview / relay",
		file:  "opview-relay.json",
		description: "The opview relay: every push group and its freshness, push rate and failures, series per group, " +
			"pull sources' scrape health, and the relay process. Generated by opview (dashboards/).",
		tags: []string{"opview", "relay"},
		variables: []Variable{
			{Name: "job", Query: "label_values(opview_relay_build_info, job)", Multi: true, IncludeAll: true, AllValue: AllValue},
			{Name: "instance", Query: `label_values(opview_relay_build_info{job=~"$job"}, instance)`, Multi: true, IncludeAll: true, AllValue: AllValue},
			{Name: "group", Query: "label_values(opview_relay_group_series, job)", Multi: true, IncludeAll: true, AllValue: AllValue},
			{Name: "source", Query: "label_values(opview_relay_source_up, job)", Multi: true, IncludeAll: true, AllValue: AllValue},
		},
		rows: []rowSpec{
			{id: 1, title: "Overview", panels: overview},
			{id: 10, title: "Push groups", panels: groups},
			{id: 20, title: "Push API and store", panels: push},
			{id: 30, title: "Pull sources", panels: sources},
			{id: 40, title: "Relay process", panels: process},
		},
	}
}
