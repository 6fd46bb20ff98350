// Package ui is opview top's terminal view (Bubble Tea): a header with the source and its
// health, the controllers table, a controller's detail and the process screen. It scrapes the
// source every interval into a window and shows what package stats computes from it.
package ui

import (
	"context"
	"time"

	"github.com/charmbracelet/bubbles/table"
	"github.com/charmbracelet/bubbles/textinput"
	"github.com/charmbracelet/bubbles/viewport"
	tea "github.com/charmbracelet/bubbletea"
	dto "github.com/prometheus/client_model/go"

	"github.com/opview/opview/internal/top/stats"
	"github.com/opview/opview/internal/top/window"
)

// Source is where the scrapes come from (see package source).
type Source interface {
	Fetch(ctx context.Context) ([]*dto.MetricFamily, error)
	String() string
	// Once tells that the source gives a single scrape (a file): it is not scraped again.
	Once() bool
}

// Options configure the view.
type Options struct {
	Source   Source
	Window   *window.Window
	Interval time.Duration
	// Now is the clock (time.Now when nil); tests fix it.
	Now func() time.Time
	// Context bounds every scrape (context.Background when nil).
	Context context.Context
}

type screen int

const (
	screenControllers screen = iota
	screenDetail
	screenProcess
)

// Model is the Bubble Tea model of opview top.
type Model struct {
	opts          Options
	width, height int
	screen        screen
	help          bool

	all      []stats.Controller // every controller, by name
	visible  []stats.Controller // filtered and sorted, as the table shows them
	table    table.Model
	sortCol  int
	reverse  bool
	filter   textinput.Model
	editing  bool
	selected string // the controller the detail screen shows

	detail  viewport.Model
	process viewport.Model

	scrapes    int       // successful scrapes
	lastScrape time.Time // of the last good scrape
	lastErr    error
	fetching   bool
}

// New returns the model. The window may already hold scrapes (tests fill it).
func New(opts Options) *Model {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	ti := textinput.New()
	ti.Prompt = "/"
	ti.Placeholder = "filter controllers"
	ti.CharLimit = 64
	m := &Model{
		opts:    opts,
		width:   80,
		height:  24,
		sortCol: stats.ColName,
		filter:  ti,
		table:   table.New(table.WithFocused(true), table.WithStyles(tableStyles())),
		detail:  viewport.New(80, 20),
		process: viewport.New(80, 20),
	}
	if n := opts.Window.Len(); n > 0 {
		m.scrapes = n
		m.lastScrape = opts.Window.Newest()
	}
	m.refresh()
	return m
}

type scrapeMsg struct {
	at   time.Time
	fams []*dto.MetricFamily
	err  error
}

type scrapeDueMsg struct{}

type clockMsg struct{}

// Init starts the first scrape and the header's clock.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(m.fetch(), clock())
}

func clock() tea.Cmd {
	return tea.Tick(time.Second, func(time.Time) tea.Msg { return clockMsg{} })
}

func (m *Model) fetch() tea.Cmd {
	if m.fetching {
		return nil
	}
	m.fetching = true
	src, ctx, now := m.opts.Source, m.opts.Context, m.opts.Now
	return func() tea.Msg {
		at := now()
		fams, err := src.Fetch(ctx)
		return scrapeMsg{at: at, fams: fams, err: err}
	}
}

// Update handles scrapes, keys, the mouse and resizes.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case scrapeMsg:
		m.fetching = false
		if msg.err != nil {
			m.lastErr = msg.err
			m.layout() // the header grew
		} else {
			m.lastErr = nil
			if m.opts.Window.Add(msg.at, msg.fams) {
				m.scrapes++
				m.lastScrape = msg.at
			}
			m.refresh()
		}
		if m.opts.Source.Once() && msg.err == nil {
			return m, nil
		}
		return m, tea.Tick(m.opts.Interval, func(time.Time) tea.Msg { return scrapeDueMsg{} })
	case scrapeDueMsg:
		return m, m.fetch()
	case clockMsg:
		return m, clock()
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.layout()
		return m, nil
	case tea.MouseMsg:
		return m, m.mouse(msg)
	case tea.KeyMsg:
		if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste && !m.editing {
			// Keys typed faster than the terminal is read arrive together ("ff"): one at a time.
			var cmds []tea.Cmd
			for _, r := range msg.Runes {
				cmds = append(cmds, m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt}))
			}
			return m, tea.Batch(cmds...)
		}
		return m, m.key(msg)
	}
	return m, nil
}

// refresh recomputes what the screens show from the window.
func (m *Model) refresh() {
	m.all = stats.Controllers(m.opts.Window)
	m.applyTable() // lays out and renders every screen
}

// applyTable filters and sorts the rows and keeps the cursor on the same controller.
func (m *Model) applyTable() {
	var keep string
	if c := m.table.Cursor(); c >= 0 && c < len(m.visible) {
		keep = m.visible[c].Name
	}
	rows := append([]stats.Controller(nil), stats.Filter(m.all, m.filter.Value())...)
	stats.Sort(rows, m.sortCol, m.reverse)
	m.visible = rows
	cursor := 0
	for i, r := range rows {
		if r.Name == keep {
			cursor = i
		}
	}
	m.layout()
	m.table.SetCursor(cursor)
	m.setRows()
}

// layout sizes the table's columns and the viewports to the terminal.
func (m *Model) layout() {
	body := max(1, m.height-m.headerHeight()-1) // the footer takes the last line
	m.table.SetColumns(columns(m.width, m.sortCol, m.reverse))
	m.table.SetWidth(m.width)
	m.table.SetHeight(body)
	m.detail.Width, m.detail.Height = m.width, body
	m.process.Width, m.process.Height = m.width, body
	m.setRows()
	m.renderDetail()
	m.renderProcess()
}

func (m *Model) setRows() {
	rows := make([]table.Row, len(m.visible))
	cols := m.table.Columns()
	cursor := m.table.Cursor()
	for i, r := range m.visible {
		cells := r.Cells()
		row := make(table.Row, len(cells))
		for j, c := range cells {
			w := 0
			if j < len(cols) {
				w = cols[j].Width
			}
			if j == stats.ColName {
				mark := "  "
				if i == cursor {
					mark = "> "
				}
				row[j] = mark + c
			} else {
				row[j] = padLeft(c, w)
			}
		}
		rows[i] = row
	}
	m.table.SetRows(rows)
}

// Selected returns the controller under the cursor ("" when none).
func (m *Model) Selected() string {
	if c := m.table.Cursor(); c >= 0 && c < len(m.visible) {
		return m.visible[c].Name
	}
	return ""
}

func (m *Model) key(msg tea.KeyMsg) tea.Cmd {
	k := msg.String()
	if k == "ctrl+c" {
		return tea.Quit
	}
	if m.help {
		if k == "q" {
			return tea.Quit
		}
		m.help = false
		return nil
	}
	if m.editing {
		switch k {
		case "enter":
			m.editing = false
			m.filter.Blur()
		case "esc":
			m.editing = false
			m.filter.Blur()
			m.filter.SetValue("")
		default:
			var cmd tea.Cmd
			m.filter, cmd = m.filter.Update(msg)
			m.applyTable()
			return cmd
		}
		m.applyTable()
		return nil
	}
	switch k {
	case "q":
		return tea.Quit
	case "?":
		m.help = true
		return nil
	case "tab":
		if m.screen == screenProcess {
			m.screen = screenControllers
		} else {
			m.screen = screenProcess
		}
		return nil
	case "shift+tab":
		if m.screen == screenControllers {
			m.screen = screenProcess
		} else {
			m.screen = screenControllers
		}
		return nil
	}
	switch m.screen {
	case screenControllers:
		switch k {
		case "enter":
			if name := m.Selected(); name != "" {
				m.selected = name
				m.screen = screenDetail
				m.detail.GotoTop()
				m.renderDetail()
			}
		case "/":
			m.editing = true
			return m.filter.Focus()
		case "esc":
			m.filter.SetValue("")
			m.applyTable()
		case "s":
			m.sortCol = (m.sortCol + 1) % stats.NumColumns
			m.applyTable()
		case "S":
			m.reverse = !m.reverse
			m.applyTable()
		case "1", "2", "3", "4", "5", "6", "7", "8", "9":
			col := int(k[0] - '1')
			if col == m.sortCol {
				m.reverse = !m.reverse
			} else {
				m.sortCol, m.reverse = col, false
			}
			m.applyTable()
		default:
			var cmd tea.Cmd
			m.table, cmd = m.table.Update(msg)
			m.setRows()
			return cmd
		}
	case screenDetail:
		switch k {
		case "esc", "backspace", "left", "h":
			m.screen = screenControllers
		default:
			var cmd tea.Cmd
			m.detail, cmd = m.detail.Update(msg)
			return cmd
		}
	case screenProcess:
		switch k {
		case "esc":
			m.screen = screenControllers
		default:
			var cmd tea.Cmd
			m.process, cmd = m.process.Update(msg)
			return cmd
		}
	}
	return nil
}

func (m *Model) mouse(msg tea.MouseMsg) tea.Cmd {
	if msg.Action != tea.MouseActionPress {
		return nil
	}
	var delta int
	switch msg.Button {
	case tea.MouseButtonWheelUp:
		delta = -1
	case tea.MouseButtonWheelDown:
		delta = 1
	default:
		return nil
	}
	switch m.screen {
	case screenControllers:
		if delta < 0 {
			m.table.MoveUp(1)
		} else {
			m.table.MoveDown(1)
		}
		m.setRows()
	case screenDetail:
		scroll(&m.detail, 3*delta)
	case screenProcess:
		scroll(&m.process, 3*delta)
	}
	return nil
}

func scroll(v *viewport.Model, n int) {
	if n < 0 {
		v.ScrollUp(-n)
	} else {
		v.ScrollDown(n)
	}
}
