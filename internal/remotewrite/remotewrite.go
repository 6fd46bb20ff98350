// Package remotewrite merges the remote-write component's settings (external_labels and
// remote_write, deploy/k3s/components/remote-write/remote-write.yml) into the bundle's Prometheus
// configuration (deploy/k3s/prometheus/prometheus.yml): Prometheus reads a single file and
// kustomize cannot edit inside a ConfigMap's value, so `make remote-write` writes the merged file
// that the component puts in the prometheus-config ConfigMap. Comments of both files are kept.
package remotewrite

import (
	"bytes"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Merge returns base with settings' external_labels under global and its remote_write list added
// before scrape_configs, headed by the comment lines in header. settings may hold nothing else,
// and base must not already set either.
func Merge(base, settings []byte, header string) ([]byte, error) {
	root, err := mapping(base)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	set, err := mapping(settings)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	var labels, writes *yaml.Node
	for i := 0; i < len(set.Content); i += 2 {
		k, v := set.Content[i], set.Content[i+1]
		switch {
		case k.Value == "external_labels" && v.Kind == yaml.MappingNode && labels == nil:
			labels = v
		case k.Value == "remote_write" && v.Kind == yaml.SequenceNode && writes == nil:
			writes = v
		default:
			return nil, fmt.Errorf("settings: line %d: %q: only external_labels (a map) and remote_write (a list) belong here", k.Line, k.Value)
		}
	}
	if labels == nil || len(labels.Content) == 0 {
		return nil, errors.New("settings: no external_labels: the store could not tell this cluster's series from others'")
	}
	if writes == nil || len(writes.Content) == 0 {
		return nil, errors.New("settings: no remote_write entry")
	}
	if _, v := get(root, "remote_write"); v != nil {
		return nil, errors.New("base: already sets remote_write")
	}
	_, global := get(root, "global")
	if global == nil {
		global = &yaml.Node{Kind: yaml.MappingNode}
		root.Content = append([]*yaml.Node{str("global"), global}, root.Content...)
	}
	if global.Kind != yaml.MappingNode {
		return nil, errors.New("base: global is not a map")
	}
	if _, v := get(global, "external_labels"); v != nil {
		return nil, errors.New("base: already sets global.external_labels")
	}
	lk, _ := get(set, "external_labels")
	global.Content = append(global.Content, lk, labels)
	wk, _ := get(set, "remote_write")
	at := len(root.Content)
	if i, _ := get(root, "scrape_configs"); i != nil {
		for j := 0; j < len(root.Content); j += 2 {
			if root.Content[j] == i {
				at = j
			}
		}
	}
	root.Content = append(root.Content[:at], append([]*yaml.Node{wk, writes}, root.Content[at:]...)...)

	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mapping parses a YAML document whose top level is a map.
func mapping(b []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a YAML map")
	}
	m := doc.Content[0]
	if doc.HeadComment != "" && m.HeadComment == "" { // keep the file's opening comment
		m.HeadComment = doc.HeadComment
	}
	return m, nil
}

// get returns the key and value nodes of key in map m.
func get(m *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
