package api

import (
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/opview/opview/exporter/store"
)

//go:embed status.html
var statusFS embed.FS

var statusTmpl = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Truncate(time.Second).String() + " ago"
	},
	"bytes": func(n int64) string { return formatBytes(n) },
	"until": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		if d := t.Sub(now); d > 0 {
			return "in " + d.Truncate(time.Second).String()
		}
		return "expired " + now.Sub(t).Truncate(time.Second).String() + " ago"
	},
}).ParseFS(statusFS, "status.html"))

// Setting is one of the relay's settings as the status page shows it: a flag and its value.
type Setting struct{ Name, Value string }

// StatusInfo is what the status page shows besides the groups.
type StatusInfo struct {
	Version  string
	TTL      time.Duration
	Settings []Setting
	// Sections render more of the page (the pull sources), after the groups.
	Sections []func() (template.HTML, error)
}

// Status serves the status page: every group, its labels, last push, series and expiry.
func Status(s store.Store, info StatusInfo, now func() time.Time, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		sections := make([]template.HTML, 0, len(info.Sections))
		for _, render := range info.Sections {
			html, err := render()
			if err != nil {
				logger.Error("rendering a status page section", "err", err)
				continue
			}
			sections = append(sections, html)
		}
		err := statusTmpl.Execute(w, struct {
			Info     StatusInfo
			Now      time.Time
			Groups   []store.GroupStatus
			Usage    store.Usage
			Sections []template.HTML
		}{info, now(), s.Groups(), s.Usage(), sections})
		if err != nil {
			logger.Error("rendering the status page", "err", err)
		}
	})
}

// Healthy answers /-/healthy: the process serves HTTP.
func Healthy() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("Healthy.\n"))
	})
}

// Ready answers /-/ready: 200 once ready() is true, 503 before.
func Ready(ready func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready() {
			http.Error(w, "Not ready.", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("Ready.\n"))
	})
}

// formatBytes renders a byte count: 512 B, 64.0 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTP"[exp]) + "iB"
}
