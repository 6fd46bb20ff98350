package sources

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	yaml "go.yaml.in/yaml/v2"

	"github.com/opview/opview/exporter/scrape"
)

// Spec describes a pull source: its URL, how often and how long to scrape it, and the HTTP client
// settings of a Prometheus scrape config (authorization, basic_auth, tls_config,
// follow_redirects, enable_http2, ...).
//
// Its JSON form is the sources API's (PUT /api/v1/sources/<name>): decoding it refuses what a
// client of the API may not set, files on the relay's side and settings that fetch other URLs
// (oauth2, proxies); encoding it redacts the secrets. Its YAML form is an entry of the operator's
// --sources.config-file, where every setting of a scrape config's HTTP client is allowed.
type Spec struct {
	URL      string   `yaml:"url"`
	Interval Duration `yaml:"interval,omitempty"` // 0: DefaultInterval
	Timeout  Duration `yaml:"timeout,omitempty"`  // 0: the relay's --sources.scrape-timeout
	// HTTPClientConfig is prometheus/common's: the zero value neither follows redirects nor
	// speaks HTTP/2; decoding starts from config.DefaultHTTPClientConfig, which does both.
	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`

	fromAuth bool // the settings came in the older "auth" object: messages name its fields
}

// Duration is a time.Duration written as "15s".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (examples: 15s, 1m30s)", shorten(string(b), 32))
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return errors.New("want a duration (examples: 15s, 1m30s)")
	}
	return d.UnmarshalText([]byte(s))
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// legacyAuth is the "auth" object of the first version of the sources API, still read so that
// persistence files and scripts written for it keep working.
type legacyAuth struct {
	BearerToken        string `json:"bearer_token,omitempty"`
	BearerTokenFile    string `json:"bearer_token_file,omitempty"`
	Username           string `json:"username,omitempty"`
	Password           string `json:"password,omitempty"`
	CAFile             string `json:"ca_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// apiOnlyOperator are the top-level scrape-config fields the API refuses outright: each makes the
// relay fetch another URL or read files.
var apiOnlyOperator = map[string]string{
	"oauth2":                 "it makes the relay fetch a token from another URL",
	"proxy_url":              "it sends the relay's requests through another host",
	"no_proxy":               "proxies are not accepted through the API",
	"proxy_from_environment": "proxies are not accepted through the API",
	"proxy_connect_header":   "proxies are not accepted through the API",
	"http_headers":           "headers may name files on the relay's side",
}

// UnmarshalJSON decodes the API's form strictly: an unknown field, a value of the wrong type, a
// file on the relay's side or a setting that fetches another URL is an error naming the field.
func (s *Spec) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return errors.New(jsonMsg(err, ""))
	}
	if fields == nil {
		return errors.New(`want a JSON object such as {"url": "http://host:port/metrics"}`)
	}
	*s = Spec{HTTPClientConfig: config.DefaultHTTPClientConfig}
	take := func(name string, v any) error {
		raw, ok := fields[name]
		if !ok {
			return nil
		}
		delete(fields, name)
		return strictJSON(raw, v, name)
	}
	var auth *legacyAuth
	for _, f := range []struct {
		name string
		v    any
	}{{"url", &s.URL}, {"interval", &s.Interval}, {"timeout", &s.Timeout}, {"auth", &auth}} {
		if err := take(f.name, f.v); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(fields) {
		if why, refused := apiOnlyOperator[name]; refused {
			return fmt.Errorf("field %q is not accepted through the API: %s; the relay's operator can set it in --sources.config-file", name, why)
		}
	}
	if len(fields) > 0 {
		rest, err := json.Marshal(fields)
		if err != nil {
			return err
		}
		type plain config.HTTPClientConfig // without its UnmarshalJSON, so that decoding is strict
		if err := strictJSON(rest, (*plain)(&s.HTTPClientConfig), ""); err != nil {
			return err
		}
	}
	if auth != nil {
		for _, name := range []string{"authorization", "basic_auth", "bearer_token", "bearer_token_file", "tls_config"} {
			if _, ok := fields[name]; ok {
				return fmt.Errorf(`give "auth" or the scrape-config fields (authorization, basic_auth, tls_config), not both (%q is set)`, name)
			}
		}
		s.fromAuth = true
		s.HTTPClientConfig.BearerToken = config.Secret(auth.BearerToken)
		s.HTTPClientConfig.BearerTokenFile = auth.BearerTokenFile
		if auth.Username != "" || auth.Password != "" {
			s.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: auth.Username, Password: config.Secret(auth.Password)}
		}
		s.HTTPClientConfig.TLSConfig.CAFile = auth.CAFile
		s.HTTPClientConfig.TLSConfig.InsecureSkipVerify = auth.InsecureSkipVerify
	}
	if f := s.localFile(); f != "" {
		return fmt.Errorf("field %q is not accepted through the API: a client may not make the relay read its files; give the secret or the certificate inline (authorization.credentials, basic_auth.password, tls_config.ca), or ask the relay's operator to configure the source in --sources.config-file", f)
	}
	if err := s.HTTPClientConfig.Validate(); err != nil {
		return err
	}
	return nil
}

// localFile names the first setting that reads a file (or a secret manager's reference) on the
// relay's side, as the client wrote it.
func (s *Spec) localFile() string {
	c := &s.HTTPClientConfig
	auth := func(name, legacyName string) string {
		if s.fromAuth {
			return "auth." + legacyName
		}
		return name
	}
	switch {
	case c.BearerTokenFile != "":
		return auth("bearer_token_file", "bearer_token_file")
	case c.Authorization != nil && c.Authorization.CredentialsFile != "":
		return "authorization.credentials_file"
	case c.Authorization != nil && c.Authorization.CredentialsRef != "":
		return "authorization.credentials_ref"
	case c.BasicAuth != nil && c.BasicAuth.UsernameFile != "":
		return "basic_auth.username_file"
	case c.BasicAuth != nil && c.BasicAuth.UsernameRef != "":
		return "basic_auth.username_ref"
	case c.BasicAuth != nil && c.BasicAuth.PasswordFile != "":
		return "basic_auth.password_file"
	case c.BasicAuth != nil && c.BasicAuth.PasswordRef != "":
		return "basic_auth.password_ref"
	case c.TLSConfig.CAFile != "":
		return auth("tls_config.ca_file", "ca_file")
	case c.TLSConfig.CARef != "":
		return "tls_config.ca_ref"
	case c.TLSConfig.CertFile != "":
		return "tls_config.cert_file"
	case c.TLSConfig.CertRef != "":
		return "tls_config.cert_ref"
	case c.TLSConfig.KeyFile != "":
		return "tls_config.key_file"
	case c.TLSConfig.KeyRef != "":
		return "tls_config.key_ref"
	}
	return ""
}

// MarshalJSON writes the API's form with the secrets redacted ("<secret>", as Prometheus shows
// them) and the URL's password replaced by "xxxxx".
func (s Spec) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(struct {
		URL      string   `json:"url"`
		Interval Duration `json:"interval,omitempty"`
		Timeout  Duration `json:"timeout,omitempty"`
	}{scrape.RedactURL(s.URL), s.Interval, s.Timeout})
	if err != nil {
		return nil, err
	}
	// config.Secret redacts itself when encoded.
	hc, err := json.Marshal(s.HTTPClientConfig)
	if err != nil {
		return nil, err
	}
	hc = bytes.Replace(hc, []byte(`,"proxy_url":null`), nil, 1)
	if len(hc) <= 2 {
		return head, nil
	}
	return append(append(head[:len(head)-1], ','), hc[1:]...), nil
}

// strictJSON decodes raw into v refusing unknown fields; errors name the field (prefixed with
// field when given) and never a Go type.
func strictJSON(raw []byte, v any, field string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(jsonMsg(err, field))
	}
	return nil
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// jsonMsg rewrites an encoding/json error in the terms of the JSON document.
func jsonMsg(err error, field string) string {
	join := func(a, b string) string {
		switch {
		case a == "":
			return b
		case b == "":
			return a
		}
		return a + "." + b
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: got a JSON %s, want %s", join(field, te.Field), te.Value, jsonKind(te.Type))
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fmt.Sprintf("unknown field %q", join(field, name))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON document is empty or cut short"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if field != "" {
		return fmt.Sprintf("field %q: %s", field, msg)
	}
	return msg
}

// jsonKind names what a Go type takes in JSON.
func jsonKind(t reflect.Type) string {
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		if t == reflect.TypeFor[Duration]() {
			return `a duration string such as "15s"`
		}
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// shorten cuts s to at most n bytes (on a rune boundary) for quoting it in a message.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// configFile is the --sources.config-file format.
type configFile struct {
	Sources []fileSource `yaml:"sources"`
}

type fileSource struct {
	Name string `yaml:"name"`
	Spec `yaml:",inline"`
}

// UnmarshalYAML starts from Prometheus's HTTP client defaults (follow redirects, HTTP/2), as a
// scrape config does.
func (f *fileSource) UnmarshalYAML(unmarshal func(any) error) error {
	*f = fileSource{Spec: Spec{HTTPClientConfig: config.DefaultHTTPClientConfig}}
	type plain fileSource
	if err := unmarshal((*plain)(f)); err != nil {
		return err
	}
	return f.HTTPClientConfig.Validate()
}

var (
	yamlUnknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
	yamlIntoType     = regexp.MustCompile(` into [\w.]*\.(\w+)`)
)

// LoadConfigFile reads the operator's sources file: YAML, decoded strictly, with a list of
// sources each made of a name, a url, an optional interval and timeout and the HTTP client
// settings of a Prometheus scrape config. Relative file names in it are relative to its directory.
//
//	sources:
//	  - name: my-operator
//	    url: https://192.168.1.20:8443/metrics
//	    authorization:
//	      credentials_file: /etc/opview/metrics-token
//	    tls_config:
//	      insecure_skip_verify: true
func LoadConfigFile(path string) (map[string]Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cf configFile
	if err := yaml.UnmarshalStrict(b, &cf); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = yamlUnknownField.ReplaceAllString(msg, `unknown field "$1"`)
		msg = yamlIntoType.ReplaceAllString(msg, " into $1")
		return nil, fmt.Errorf("%s: %s", path, msg)
	}
	out := make(map[string]Spec, len(cf.Sources))
	for i, fs := range cf.Sources {
		if fs.Name == "" {
			return nil, fmt.Errorf("%s: source %d has no name", path, i+1)
		}
		if _, dup := out[fs.Name]; dup {
			return nil, fmt.Errorf("%s: the source name %q is given twice", path, fs.Name)
		}
		fs.HTTPClientConfig.SetDirectory(filepath.Dir(path))
		out[fs.Name] = fs.Spec
	}
	return out, nil
}
