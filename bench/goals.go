package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Goal is one performance goal, read from bench/goals.json: the ratio Of / Over of two
// "server/figure" names must be at most AtMost (or at least AtLeast) at every N in N (every
// level measured when N is empty). A goal is met when the median of the ratio over the
// repetitions meets it at each of those N.
type Goal struct {
	Name    string   `json:"name"`
	Of      string   `json:"of"`
	Over    string   `json:"over"`
	AtMost  *float64 `json:"at_most,omitempty"`
	AtLeast *float64 `json:"at_least,omitempty"`
	N       []int    `json:"n,omitempty"`
}

// Target is the goal's bound as the report prints it ("<= 1.25").
func (g Goal) Target() string {
	if g.AtMost != nil {
		return fmt.Sprintf("<= %g", *g.AtMost)
	}
	return fmt.Sprintf(">= %g", *g.AtLeast)
}

func (g Goal) meets(v float64) bool {
	if g.AtMost != nil {
		return v <= *g.AtMost
	}
	return v >= *g.AtLeast
}

var (
	knownServers = []string{Relay, Pushgateway, PushgatewayUnchecked, Limit}
	knownFigures = []string{PushesPerSecond, CPUSecondsPerPush, PushP50Seconds, PushP99Seconds, RSSBytes, RSSBytesPerSeries,
		ScrapeSeconds("text"), ScrapeSeconds("proto"), ScrapeBytes("text"), ScrapeBytes("proto")}
)

func checkFigure(field, v string) error {
	s, f, ok := strings.Cut(v, "/")
	if !ok || !slices.Contains(knownServers, s) || !slices.Contains(knownFigures, f) {
		return fmt.Errorf("%s %q: want server/figure, server one of %s, figure one of %s", field, v,
			strings.Join(knownServers, ", "), strings.Join(knownFigures, ", "))
	}
	return nil
}

// ParseGoals decodes a goals file strictly: unknown fields, a missing name or bound, both bounds,
// and unknown servers or figures are errors naming the goal and the field.
func ParseGoals(b []byte) ([]Goal, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var goals []Goal
	if err := dec.Decode(&goals); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the list of goals")
	}
	for i, g := range goals {
		var err error
		switch {
		case g.Name == "":
			err = errors.New("name is required")
		case (g.AtMost == nil) == (g.AtLeast == nil):
			err = errors.New("give exactly one of at_most and at_least")
		default:
			err = errors.Join(checkFigure("of", g.Of), checkFigure("over", g.Over))
		}
		for _, n := range g.N {
			if n < 1 {
				err = errors.Join(err, fmt.Errorf("n: %d is not a number of groups", n))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("goal %d (%q): %w", i+1, g.Name, err)
		}
	}
	return goals, nil
}

// LoadGoals reads and parses a goals file.
func LoadGoals(path string) ([]Goal, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	goals, err := ParseGoals(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return goals, nil
}

// GoalAtN is a goal's ratio at one N; Ratio is nil when that N was not measured.
type GoalAtN struct {
	N     int      `json:"n"`
	Ratio *Summary `json:"ratio,omitempty"`
	Met   bool     `json:"met"`
}

// GoalResult is a goal evaluated on a run.
type GoalResult struct {
	Goal
	At []GoalAtN `json:"at"`
	// Met is true when the median met the goal at every N the goal names (or every level run).
	Met bool `json:"met"`
	// Missing lists the N the goal names that the run did not measure.
	Missing []int `json:"missing,omitempty"`
}

// Evaluate evaluates each goal on the levels of a run.
func Evaluate(goals []Goal, levels []*Level) []GoalResult {
	out := make([]GoalResult, 0, len(goals))
	for _, g := range goals {
		ns := g.N
		if len(ns) == 0 {
			for _, lv := range levels {
				ns = append(ns, lv.N)
			}
		}
		r := GoalResult{Goal: g, Met: len(ns) > 0}
		for _, n := range ns {
			at := GoalAtN{N: n}
			i := slices.IndexFunc(levels, func(l *Level) bool { return l.N == n })
			if i >= 0 {
				if s, ok := levels[i].Ratio(g.Of, g.Over); ok {
					at.Ratio, at.Met = &s, g.meets(s.Median)
				}
			}
			if at.Ratio == nil {
				r.Missing = append(r.Missing, n)
			}
			r.Met = r.Met && at.Met
			r.At = append(r.At, at)
		}
		out = append(out, r)
	}
	return out
}
