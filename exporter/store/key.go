package store

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// Label is one name/value pair of a grouping key.
type Label struct {
	Name, Value string
}

// Key identifies a group: the labels of its push URL (job first in the URL, always present).
// Keys are immutable; build them with NewKey.
type Key struct {
	labels []Label // sorted by name
	id     string
}

// NewKey validates the grouping labels and returns the group's key. job is required; label names
// must be valid Prometheus label names not starting with "__"; values must be valid UTF-8.
func NewKey(labels map[string]string) (Key, error) {
	if labels["job"] == "" {
		return Key{}, &Error{Kind: KindInvalid, Msg: "grouping key: the job label is required and must not be empty"}
	}
	ls := make([]Label, 0, len(labels))
	for n, v := range labels {
		if err := checkLabelName(n); err != nil {
			return Key{}, &Error{Kind: KindInvalid, Msg: "grouping key: " + err.Error()}
		}
		if !utf8.ValidString(v) {
			return Key{}, &Error{Kind: KindInvalid, Msg: fmt.Sprintf("grouping key: value of label %s is not valid UTF-8", q(n))}
		}
		ls = append(ls, Label{n, v})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Name)
		b.WriteByte(0xff)
		b.WriteString(l.Value)
		b.WriteByte(0xff)
	}
	return Key{labels: ls, id: b.String()}, nil
}

// MustKey is NewKey for tests and constants; it panics on an invalid key.
func MustKey(kv ...string) Key {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	k, err := NewKey(m)
	if err != nil {
		panic(err)
	}
	return k
}

// Labels returns the grouping labels sorted by name.
func (k Key) Labels() []Label { return append([]Label(nil), k.labels...) }

// Get returns the value of a grouping label.
func (k Key) Get(name string) (string, bool) {
	for _, l := range k.labels {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}

// String renders the key like a label set: {instance="a",job="b"}. Values are quoted whole: use
// Excerpt in messages.
func (k Key) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range k.labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// Excerpt renders the key like String with every value cut to a bounded excerpt, for messages
// and logs.
func (k Key) Excerpt() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range k.labels {
		if i > 0 {
			b.WriteByte(',')
		}
		if i == 8 {
			fmt.Fprintf(&b, "... %d more", len(k.labels)-i)
			break
		}
		b.WriteString(Truncate(l.Name, maxQuoted))
		b.WriteByte('=')
		b.WriteString(q(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// IsZero reports whether k is the zero Key (no labels): what a push URL that did not parse has.
func (k Key) IsZero() bool { return len(k.labels) == 0 }

// size is the memory the key's strings take.
func (k Key) size() int { return 2*len(k.id) + 32*len(k.labels) }

func checkLabelName(n string) error {
	if !model.LegacyValidation.IsValidLabelName(n) {
		return fmt.Errorf("label name %s is invalid (want [a-zA-Z_][a-zA-Z0-9_]*)", q(n))
	}
	if strings.HasPrefix(n, "__") {
		return fmt.Errorf("label name %s is reserved (names starting with __ are internal to Prometheus)", q(n))
	}
	return nil
}
