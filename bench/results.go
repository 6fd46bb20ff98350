package bench

import (
	"math"
	"strings"
)

// Servers measured, by the name figures and goals use.
const (
	Relay                = "relay"                 // opview-relay serve
	Pushgateway          = "pushgateway"           // Pushgateway's default mode (consistency check on every push)
	PushgatewayUnchecked = "pushgateway-unchecked" // Pushgateway with --push.disable-consistency-check
	// Limit is the limits process: its push figures are the parse-only limit (the relay's push
	// parser on the same body over the same HTTP, nothing stored), its scrape figures the
	// bare-bytes limit (the relay's exposition of the same repetition served from memory).
	Limit = "limit"
)

// Figures measured per server and repetition.
const (
	PushesPerSecond   = "pushes_per_second"
	CPUSecondsPerPush = "cpu_seconds_per_push"
	PushP50Seconds    = "push_p50_seconds"
	PushP99Seconds    = "push_p99_seconds"
	RSSBytes          = "rss_bytes"
	RSSBytesPerSeries = "rss_bytes_per_series"
)

// ScrapeSeconds is the figure of the median scrape time in a format ("text" or "proto");
// ScrapeBytes its response size.
func ScrapeSeconds(format string) string { return "scrape_" + format + "_seconds" }
func ScrapeBytes(format string) string   { return "scrape_" + format + "_bytes" }

// Results is bench/results.json.
type Results struct {
	Date    string  `json:"date"`
	Command string  `json:"command"`
	Machine Machine `json:"machine"`
	Payload struct {
		File       string `json:"file"`
		Families   int    `json:"families"`
		Series     int    `json:"series"`
		TextBytes  int    `json:"text_bytes"`
		ProtoBytes int    `json:"proto_bytes"`
	} `json:"payload"`
	Settings Settings         `json:"settings"`
	IdleRSS  map[string]int64 `json:"idle_rss_bytes"`
	Levels   []*Level         `json:"levels"`
	Goals    []GoalResult     `json:"goals"`
	Seconds  float64          `json:"seconds"` // the whole run
}

// Machine is where the run happened and how busy it was.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPU       string `json:"cpu"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
	// OtherCPU is the share of the machine's CPU time (the run's duration times its cores) that
	// went to other processes than the run's, stolen time included; absent in older results.
	OtherCPU *float64          `json:"other_cpu_share,omitempty"`
	Versions map[string]string `json:"versions"`
}

// Settings are the bounds of the run.
type Settings struct {
	Repeats               int               `json:"repeats"`
	Concurrency           int               `json:"concurrency"`
	PushSecondsMax        float64           `json:"push_seconds_max"`
	PushesMax             int               `json:"pushes_max"`
	ScrapeSecondsMax      float64           `json:"scrape_seconds_max"`
	ScrapesMax            int               `json:"scrapes_max"`
	PushgatewayFillBudget float64           `json:"pushgateway_fill_budget_seconds"`
	Args                  map[string]string `json:"args"` // each server's flags
	RelayEnv              string            `json:"relay_env,omitempty"`
}

// Level is every measurement at one N.
type Level struct {
	N      int `json:"n"`
	Series int `json:"series"`
	// LoadAvg is the load average (1, 5, 15 min) at the start of each repetition.
	LoadAvg []string                `json:"loadavg"`
	Servers map[string]*ServerLevel `json:"servers"`
}

// ServerLevel is one server at one N.
type ServerLevel struct {
	Reached     bool    `json:"reached"`
	Note        string  `json:"note,omitempty"`
	FillSeconds float64 `json:"fill_seconds"`
	// Runs holds the figures of each repetition, by figure name.
	Runs []map[string]float64 `json:"runs,omitempty"`
}

// Values returns figure over the repetitions, NaN where a repetition lacks it; nil when the
// server was not measured at this level.
func (l *Level) Values(server, figure string) []float64 {
	s := l.Servers[server]
	if s == nil || !s.Reached {
		return nil
	}
	out := make([]float64, len(s.Runs))
	for i, r := range s.Runs {
		v, ok := r[figure]
		if !ok {
			v = math.NaN()
		}
		out[i] = v
	}
	return out
}

// Figure summarises server's figure at this level.
func (l *Level) Figure(server, figure string) (Summary, bool) {
	return Summarize(l.Values(server, figure))
}

// Ratio summarises of / over, two "server/figure" names, paired by repetition.
func (l *Level) Ratio(of, over string) (Summary, bool) {
	os, of2, ok1 := strings.Cut(of, "/")
	vs, vf, ok2 := strings.Cut(over, "/")
	if !ok1 || !ok2 {
		return Summary{}, false
	}
	return Summarize(Ratios(l.Values(os, of2), l.Values(vs, vf)))
}
