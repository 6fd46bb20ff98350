package store

import "github.com/prometheus/client_golang/prometheus"

var (
	groupsDesc  = prometheus.NewDesc("opview_relay_groups", "Groups the relay holds, fresh or expired but not yet forgotten.", nil, nil)
	seriesDesc  = prometheus.NewDesc("opview_relay_series", "Series the relay currently exposes for its groups.", nil, nil)
	expiredDesc = prometheus.NewDesc("opview_relay_groups_expired_total", "Groups that went quiet for longer than the group TTL and left the exposition.", nil, nil)
	bytesDesc   = prometheus.NewDesc("opview_relay_store_bytes", "Memory the stored groups take, as the store's byte budget counts it.", nil, nil)
	budgetDesc  = prometheus.NewDesc("opview_relay_store_budget_bytes", "The store's byte budget: pushes that would pass it are refused (0: no budget).", nil, nil)
)

type collector struct{ s *MemoryStore }

// NewCollector exposes the store's size, budget and expiry count as the relay's own metrics.
func NewCollector(s *MemoryStore) prometheus.Collector { return collector{s} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- groupsDesc
	ch <- seriesDesc
	ch <- expiredDesc
	ch <- bytesDesc
	ch <- budgetDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	u := c.s.Usage()
	ch <- prometheus.MustNewConstMetric(groupsDesc, prometheus.GaugeValue, float64(u.Groups))
	ch <- prometheus.MustNewConstMetric(seriesDesc, prometheus.GaugeValue, float64(u.Series))
	ch <- prometheus.MustNewConstMetric(expiredDesc, prometheus.CounterValue, float64(u.Expired))
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(u.Bytes))
	ch <- prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, float64(u.Limits.MaxBytes))
}
