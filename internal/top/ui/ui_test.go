package ui

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
	dto "github.com/prometheus/client_model/go"

	"github.com/opview/opview/internal/top/fixture"
	"github.com/opview/opview/internal/top/stats"
	"github.com/opview/opview/internal/top/window"
)

func init() {
	// Golden frames are plain text: no colours or attributes whatever the terminal running the test.
	lipgloss.SetColorProfile(termenv.Ascii)
}

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

const (
	steps    = 31
	interval = 2 * time.Second
)

// fixedSource returns the newest recorded scrape (which the window already holds, so adding it
// again changes nothing) or a fixed error.
type fixedSource struct {
	fams []*dto.MetricFamily
	err  error
}

func (s fixedSource) Fetch(context.Context) ([]*dto.MetricFamily, error) { return s.fams, s.err }
func (s fixedSource) String() string                                     { return "http://127.0.0.1:8080/metrics" }
func (s fixedSource) Once() bool                                         { return false }

var (
	recordOnce      sync.Once
	recordedScrapes [][]*dto.MetricFamily
)

// recorded returns a window holding steps scrapes of 40 generated controllers taken every 2s
// (the counters restart at step 20), the clock at the newest one plus 1s, and a source.
func recorded(t testing.TB, down bool) (*window.Window, func() time.Time, Source) {
	t.Helper()
	recordOnce.Do(func() {
		op := fixture.Operator{Controllers: fixture.Names(40), ResetAt: 20}
		for i := range steps {
			fams, err := op.Families(i)
			if err != nil {
				panic(err)
			}
			recordedScrapes = append(recordedScrapes, fams)
		}
	})
	w := window.New(time.Minute, window.Capacity(time.Minute, interval), stats.Families...)
	for i, fams := range recordedScrapes {
		w.Add(t0.Add(time.Duration(i)*interval), fams)
	}
	last := recordedScrapes[len(recordedScrapes)-1]
	now := t0.Add(time.Duration(steps-1) * interval)
	if down {
		now = now.Add(40 * time.Second)
		return w, func() time.Time { return now }, fixedSource{err: errors.New(`GET http://127.0.0.1:8080/metrics: dial tcp 127.0.0.1:8080: connect: connection refused (nothing listens there: is the operator running, with metrics enabled?)`)}
	}
	return w, func() time.Time { return now }, fixedSource{fams: last}
}

func key(s string) tea.KeyMsg {
	switch s {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "tab":
		return tea.KeyMsg{Type: tea.KeyTab}
	case "pgdown":
		return tea.KeyMsg{Type: tea.KeyPgDown}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

func TestGoldenFrames(t *testing.T) {
	cases := []struct {
		name string
		down bool
		msgs []tea.Msg
		// want is a fragment the frame must contain (beyond matching its golden file).
		want string
	}{
		{name: "table", want: "configmap"},
		{name: "detail", msgs: []tea.Msg{key("down"), key("enter")}, want: "Reconcile time histogram"},
		{name: "filter", msgs: []tea.Msg{key("/"), key("s"), key("e"), key("c"), key("enter")}, want: `filter "sec"`},
		{name: "sort", msgs: []tea.Msg{key("2")}, want: "REC/S▼"},
		{name: "scroll_table", msgs: []tea.Msg{key("G")}, want: "statefulset-4"},
		{name: "scroll_detail", msgs: []tea.Msg{key("enter"), key("pgdown"), key("pgdown")}, want: "total"},
		{name: "process", msgs: []tea.Msg{key("tab")}, want: "API client requests"},
		{name: "help", msgs: []tea.Msg{key("?")}, want: "Press any key"},
		{name: "source_down", down: true, want: "source down"},
		// resize: from each size to the other one (200x60 down to 80x24 and back up), on the detail.
		{name: "resize", msgs: []tea.Msg{key("enter")}, want: "Reconcile time histogram"},
	}
	for _, size := range [][2]int{{80, 24}, {200, 60}} {
		for _, c := range cases {
			t.Run(c.name+"_"+ansi.Strip(itoa(size[0])+"x"+itoa(size[1])), func(t *testing.T) {
				w, now, src := recorded(t, c.down)
				m := New(Options{Source: src, Window: w, Interval: interval, Now: now})
				tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(size[0], size[1]))
				first := "configmap"
				if c.down {
					first = "source down"
				}
				teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(first)) },
					teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
				width, height := size[0], size[1]
				if c.name == "resize" {
					width, height = 280-size[0], 84-size[1] // 80x24 <-> 200x60
					tm.Send(tea.WindowSizeMsg{Width: width, Height: height})
				}
				for _, msg := range c.msgs {
					tm.Send(msg)
				}
				if err := tm.Quit(); err != nil {
					t.Fatal(err)
				}
				frame := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).View()
				checkFrame(t, frame, width, height)
				if !strings.Contains(frame, c.want) {
					t.Errorf("frame lacks %q:\n%s", c.want, frame)
				}
				golden.RequireEqual(t, []byte(frame))
			})
		}
	}
}

// checkFrame asserts the frame fills the terminal exactly: height lines, none wider than width.
func checkFrame(t *testing.T, frame string, width, height int) {
	t.Helper()
	lines := strings.Split(frame, "\n")
	if len(lines) != height {
		t.Errorf("frame has %d lines, want %d", len(lines), height)
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w > width {
			t.Errorf("line %d is %d cells wide, more than %d: %q", i+1, w, width, l)
		}
	}
}

func itoa(i int) string {
	var b []byte
	for i > 0 {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
	}
	return string(b)
}

// TestSourceDownKeepsData: after good scrapes, a failing one keeps the table and says why.
func TestSourceDownKeepsData(t *testing.T) {
	w, now, _ := recorded(t, false)
	m := New(Options{Source: fixedSource{err: errors.New("boom")}, Window: w, Interval: interval, Now: now})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(scrapeMsg{at: now(), err: errors.New("boom")})
	v := m.View()
	if !strings.Contains(v, "source down (showing the data of 10:01:00, 0s ago): boom") || !strings.Contains(v, "configmap") {
		t.Fatalf("view after a failed scrape:\n%s", v)
	}
}

// TestMouseWheelMovesTheCursor checks the wheel scrolls the table.
func TestMouseWheelMovesTheCursor(t *testing.T) {
	w, now, src := recorded(t, false)
	m := New(Options{Source: src, Window: w, Interval: interval, Now: now})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	first := m.Selected()
	m.Update(tea.MouseMsg{Action: tea.MouseActionPress, Button: tea.MouseButtonWheelDown})
	m.Update(tea.MouseMsg{Action: tea.MouseActionPress, Button: tea.MouseButtonWheelDown})
	if got := m.Selected(); got == first || got == "" {
		t.Fatalf("selection after two wheel-downs = %q (was %q)", got, first)
	}
}

// TestKeysReadTogether: keys typed faster than the terminal is read arrive as one message ("jj");
// each one counts.
func TestKeysReadTogether(t *testing.T) {
	w, now, src := recorded(t, false)
	m := New(Options{Source: src, Window: w, Interval: interval, Now: now})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("jj")})
	if got := m.table.Cursor(); got != 2 {
		t.Fatalf("cursor after \"jj\" = %d, want 2", got)
	}
}
