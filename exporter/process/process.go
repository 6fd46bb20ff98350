// Package process exposes the relay's process metrics (process_cpu_seconds_total & co.): the
// families and values of client_golang's process collector, read with less work per scrape.
//
// client_golang's collector parses every file it reads in full (all of /proc/stat for the boot
// time, every protocol of net/netstat for two counters, each line of the limits file with a
// regular expression): at one stored group that was half of a scrape's CPU. This collector reads
// the same files on every collection and parses only the fields it exposes, so the values are
// the same; TestSameAsClientGolang holds it to the library. Where /proc is not Linux's, it is the
// library's collector.
package process

import "github.com/prometheus/client_golang/prometheus"

// The descriptions of client_golang's process collector (without a namespace).
var (
	cpuTotalDesc = prometheus.NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", nil, nil)
	openFDsDesc  = prometheus.NewDesc("process_open_fds", "Number of open file descriptors.", nil, nil)
	maxFDsDesc   = prometheus.NewDesc("process_max_fds", "Maximum number of open file descriptors.", nil, nil)
	vsizeDesc    = prometheus.NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", nil, nil)
	maxVsizeDesc = prometheus.NewDesc("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", nil, nil)
	rssDesc      = prometheus.NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil, nil)
	startDesc    = prometheus.NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", nil, nil)
	inBytesDesc  = prometheus.NewDesc("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", nil, nil)
	outBytesDesc = prometheus.NewDesc("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", nil, nil)
)
