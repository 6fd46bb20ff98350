package sources

import (
	"encoding/json"
	"fmt"
	"sort"
)

// State returns the sources added through the API, for a persistence file: a JSON object from
// name to the body each was PUT with, secrets included (keep the file private). It is nil when
// there are none. Sources of the operator come back from the flags and are left out.
func (m *Manager) State() (json.RawMessage, error) {
	m.mu.Lock()
	state := map[string]json.RawMessage{}
	for _, s := range m.sources {
		if s.origin == OriginAPI {
			state[s.name] = s.raw
		}
	}
	m.mu.Unlock()
	if len(state) == 0 {
		return nil, nil
	}
	return json.Marshal(state) // sorted by name
}

// RestoreState adds the sources of a State, as the API would (the same checks and limits, but
// without waiting for a first scrape), and reports how many it restored and why the others were
// not. It also reads the files of earlier versions, whose bodies took an "auth" object. A name
// the operator's sources already use is skipped: the operator's source wins. Without the API
// (no write token) nothing is restored.
func (m *Manager) RestoreState(raw json.RawMessage) (restored int, errs []error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var state map[string]json.RawMessage
	if err := json.Unmarshal(raw, &state); err != nil {
		return 0, []error{fmt.Errorf("pull sources: %s", jsonMsg(err, "sources"))}
	}
	names := make([]string, 0, len(state))
	for name := range state {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !m.opts.API {
			errs = append(errs, fmt.Errorf("pull source %q not restored: %v", name, errAPIOff))
			continue
		}
		m.mu.Lock()
		old := m.sources[name]
		m.mu.Unlock()
		if old != nil && old.origin != OriginAPI {
			errs = append(errs, fmt.Errorf("pull source %q not restored: the operator configures a source of that name", name))
			continue
		}
		// Checked as a PUT is, except where a host name resolves to (not at start: the dialer
		// checks every address it connects to).
		s, err := m.apiSource(name, state[name])
		if err == nil {
			_, _, err = m.checkLiteralHost(s.spec.URL)
		}
		if err == nil {
			_, err = m.add(s, false)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pull source %q not restored: %w", name, err))
			continue
		}
		restored++
	}
	return restored, errs
}
