package sources

import (
	"bytes"
	"html/template"
	"time"
)

var sectionTmpl = template.Must(template.New("sources").Funcs(template.FuncMap{
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Truncate(time.Millisecond).String() + " ago"
	},
}).Parse(`<h2>Pull sources ({{len .Sources}})</h2>
{{if .Sources}}<table>
<tr><th>Source (job)</th><th>Instance</th><th>URL</th><th>State</th><th>Last scrape</th><th>Duration</th><th>Series</th><th>Errors</th><th>Last error</th></tr>
{{range .Sources}}<tr>
<td><code>{{.Name}}</code> ({{.Origin}})</td><td><code>{{.Instance}}</code></td><td><code>{{.URL}}</code> every {{.Interval}}</td>
<td>{{if .Health.Up}}<span class="fresh">up</span>{{else if .Health.Scrapes}}<span class="err">down</span>{{else}}pending{{end}}</td>
<td>{{ago $.Now .Health.LastScrape}}</td><td>{{.Health.ScrapeDuration}}</td><td>{{.Health.Series}}</td><td>{{.Health.Errors}} of {{.Health.Scrapes}}</td>
<td>{{if .Health.LastError}}<span class="err">{{.Health.LastError}}</span>{{end}}</td>
</tr>
{{end}}</table>
{{else}}<p>No pull sources. Add one: <code>curl -X PUT -H "Authorization: Bearer $(cat relay-token)" --data '{"url":"http://&lt;operator host&gt;:8080/metrics"}' http://&lt;relay&gt;:9091/api/v1/sources/&lt;name&gt;</code></p>
{{end}}`))

// StatusHTML renders the sources' section of the relay's status page.
func (m *Manager) StatusHTML() (template.HTML, error) {
	var b bytes.Buffer
	err := sectionTmpl.Execute(&b, struct {
		Now     time.Time
		Sources []Status
	}{m.opts.Now(), m.List()})
	//nolint:gosec // rendered by html/template, escaped
	return template.HTML(b.String()), err
}
