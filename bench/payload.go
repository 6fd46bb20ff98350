package bench

import (
	"bytes"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"
)

// Payload is what every group pushes: a captured exposition in text and as delimited protobuf
// (client_golang's push format, what the load sends).
type Payload struct {
	Text, Proto      []byte
	Families, Series int
}

// LoadPayload reads a text exposition and encodes it as delimited protobuf, families sorted by
// name. Series counts the sample lines of the text.
func LoadPayload(path string) (*Payload, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return ParsePayload(text)
}

// ParsePayload is LoadPayload on the file's content.
func ParsePayload(text []byte) (*Payload, error) {
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	p := &Payload{Text: text, Families: len(fams)}
	var buf bytes.Buffer
	for _, n := range names {
		if _, err := protodelim.MarshalTo(&buf, fams[n]); err != nil {
			return nil, err
		}
	}
	p.Proto = buf.Bytes()
	for _, line := range bytes.Split(text, []byte("\n")) {
		if len(line) > 0 && line[0] != '#' {
			p.Series++
		}
	}
	return p, nil
}
