package store

import "github.com/prometheus/client_golang/prometheus"

var (
	groupsDesc  = prometheus.NewDesc("opview_relay_groups", "Groups the relay holds, fresh or expired but not yet forgotten.", nil, nil)
	seriesDesc  = prometheus.NewDesc("opview_relay_series", "Series the relay currently exposes for its groups.", nil, nil)
	expiredDesc = prometheus.NewDesc("opview_relay_groups_expired_total", "Groups that went quiet for longer than --group.ttl and left the exposition.", nil, nil)
)

type collector struct{ s *MemoryStore }

// NewCollector exposes the store's size and expiry count as the relay's own metrics.
func NewCollector(s *MemoryStore) prometheus.Collector { return collector{s} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- groupsDesc
	ch <- seriesDesc
	ch <- expiredDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.RLock()
	groups, expired := len(c.s.groups), c.s.expired
	series := 0
	now := c.s.now()
	for _, g := range c.s.groups {
		if c.s.fresh(g, now) {
			series += g.series
		}
	}
	c.s.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(groupsDesc, prometheus.GaugeValue, float64(groups))
	ch <- prometheus.MustNewConstMetric(seriesDesc, prometheus.GaugeValue, float64(series))
	ch <- prometheus.MustNewConstMetric(expiredDesc, prometheus.CounterValue, float64(expired))
}
