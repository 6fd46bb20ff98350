package stats

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
)

// Rate formats a per-second rate with three significant digits ("-" when unknown).
func Rate(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case v == 0:
		return "0"
	case v >= 1e6:
		return sig(v/1e6) + "M"
	case v >= 1e3:
		return sig(v/1e3) + "k"
	}
	return sig(v)
}

// sig prints v with three significant digits, without trailing zeros after the point.
func sig(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return trim(strconv.FormatFloat(v, 'f', 1, 64))
	case v >= 1:
		return trim(strconv.FormatFloat(v, 'f', 2, 64))
	case v >= 0.001:
		return trim(strconv.FormatFloat(v, 'f', 3, 64))
	}
	return strconv.FormatFloat(v, 'e', 1, 64)
}

func trim(s string) string {
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

// Percent formats a ratio 0..1 as a percentage ("-" when unknown).
func Percent(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	p := v * 100
	switch {
	case p == 0:
		return "0%"
	case p >= 10:
		return strconv.FormatFloat(p, 'f', 0, 64) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// Seconds formats a duration in seconds with a unit (850µs, 12.3ms, 1.5s, 2m5s).
func Seconds(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.IsInf(v, 1):
		return "+Inf"
	case v == 0:
		return "0"
	case v < 1e-6:
		return sig(v*1e9) + "ns"
	case v < 1e-3:
		return sig(v*1e6) + "µs"
	case v < 1:
		return sig(v*1e3) + "ms"
	case v < 100:
		return sig(v) + "s"
	case v < 3600:
		return fmt.Sprintf("%dm%ds", int(v)/60, int(v)%60)
	}
	return fmt.Sprintf("%dh%dm", int(v)/3600, int(v)%3600/60)
}

// Count formats a gauge or a count ("-" when unknown; fractions kept to three digits).
func Count(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return Rate(v)
}

// Workers formats active/max workers.
func Workers(active, max float64) string {
	if math.IsNaN(active) && math.IsNaN(max) {
		return "-"
	}
	return Count(active) + "/" + Count(max)
}

// Bytes formats a byte count in binary units.
func Bytes(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64) + "B"
	}
	return sig(v) + units[i]
}

// Titles are the controllers table's column titles (the terminal view's, compact).
var Titles = [NumColumns]string{"CONTROLLER", "REC/S", "ERR%", "P50", "P99", "WORKERS", "DEPTH", "QUEUE P99", "RETRY/S"}

// Cells returns the row's formatted cells, in column order.
func (c Controller) Cells() [NumColumns]string {
	return [NumColumns]string{c.Name, Rate(c.Reconciles), Percent(c.ErrorRatio), Seconds(c.P50), Seconds(c.P99),
		Workers(c.Active, c.Max), Count(c.Depth), Seconds(c.QueueP99), Rate(c.RetriesPerSec)}
}

// WriteTable prints the controllers table as plain text (opview top --once).
func WriteTable(w io.Writer, rows []Controller) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for i, t := range Titles {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, t)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		for i, c := range r.Cells() {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
