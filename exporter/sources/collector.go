package sources

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the sources' health, labelled job=<source name>, instance=<host:port>.
const (
	MetricUp             = "opview_relay_source_up"
	MetricScrapeDuration = "opview_relay_source_scrape_duration_seconds"
	MetricScrapeErrors   = "opview_relay_source_scrape_errors_total"
	MetricLastScrape     = "opview_relay_source_last_scrape_timestamp_seconds"
)

var (
	labels         = []string{"job", "instance"}
	upDesc         = prometheus.NewDesc(MetricUp, "1 if the last scrape of the pull source succeeded and the relay stored its metrics, 0 otherwise.", labels, nil)
	durationDesc   = prometheus.NewDesc(MetricScrapeDuration, "Duration of the last scrape of the pull source.", labels, nil)
	errorsDesc     = prometheus.NewDesc(MetricScrapeErrors, "Failed scrapes of the pull source (unreachable, bad answer or metrics the relay refused).", labels, nil)
	lastScrapeDesc = prometheus.NewDesc(MetricLastScrape, "Unix time of the last scrape of the pull source.", labels, nil)
)

// Collector exposes every source's health once it has been scraped at least once.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upDesc
	ch <- durationDesc
	ch <- errorsDesc
	ch <- lastScrapeDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.m.List() {
		h := st.Health
		if h.Scrapes == 0 {
			continue
		}
		up := 0.0
		if h.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, st.Name, st.Instance)
		ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, h.ScrapeDuration.Seconds(), st.Name, st.Instance)
		ch <- prometheus.MustNewConstMetric(errorsDesc, prometheus.CounterValue, float64(h.Errors), st.Name, st.Instance)
		ch <- prometheus.MustNewConstMetric(lastScrapeDesc, prometheus.GaugeValue, float64(h.LastScrape.UnixNano())/1e9, st.Name, st.Instance)
	}
}
