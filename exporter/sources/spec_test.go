package sources

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/common/config"
)

func TestSpecJSONTakesScrapeConfigFields(t *testing.T) {
	var s Spec
	err := json.Unmarshal([]byte(`{"url": "https://192.168.1.20:8443/metrics", "interval": "30s", "timeout": "5s",
		"authorization": {"credentials": "tok"}, "tls_config": {"ca": "-----BEGIN CERTIFICATE-----", "server_name": "op"},
		"follow_redirects": false}`), &s)
	if err != nil {
		t.Fatal(err)
	}
	c := s.HTTPClientConfig
	if s.URL != "https://192.168.1.20:8443/metrics" || s.Interval.String() != "30s" || s.Timeout.String() != "5s" ||
		c.Authorization == nil || c.Authorization.Type != "Bearer" || c.Authorization.Credentials != "tok" ||
		c.TLSConfig.CA == "" || c.TLSConfig.ServerName != "op" || c.FollowRedirects || !c.EnableHTTP2 {
		t.Fatalf("decoded %+v", s)
	}
}

func (d Duration) String() string { b, _ := d.MarshalText(); return string(b) }

// The first version's "auth" object still decodes, so that persistence files and scripts
// written for it keep working.
func TestSpecJSONReadsTheOlderAuthObject(t *testing.T) {
	for body, check := range map[string]func(config.HTTPClientConfig) bool{
		`{"url": "http://h/m", "auth": {"bearer_token": "tok", "insecure_skip_verify": true}}`: func(c config.HTTPClientConfig) bool {
			return c.Authorization != nil && c.Authorization.Credentials == "tok" && c.TLSConfig.InsecureSkipVerify
		},
		`{"url": "http://h/m", "auth": {"username": "u", "password": "p"}}`: func(c config.HTTPClientConfig) bool {
			return c.BasicAuth != nil && c.BasicAuth.Username == "u" && c.BasicAuth.Password == "p"
		},
	} {
		var s Spec
		if err := json.Unmarshal([]byte(body), &s); err != nil || !check(s.HTTPClientConfig) {
			t.Errorf("%s: %v %+v", body, err, s.HTTPClientConfig)
		}
	}
	var s Spec
	err := json.Unmarshal([]byte(`{"url": "http://h/m", "auth": {"bearer_token": "a"}, "authorization": {"credentials": "b"}}`), &s)
	if err == nil || !strings.Contains(err.Error(), `give "auth" or the scrape-config fields`) {
		t.Errorf("auth and authorization together: %v", err)
	}
}

func TestSpecJSONErrorsNameTheField(t *testing.T) {
	for body, want := range map[string]string{
		`[]`:                                    `got a JSON array, want an object`,
		`null`:                                  `want a JSON object`,
		`{"url": 1}`:                            `field "url": got a JSON number, want a string`,
		`{"url": "x", "interval": 5}`:           `field "interval": got a JSON number, want a duration string such as "15s"`,
		`{"url": "x", "interval": "5 minutes"}`: `field "interval": "5 minutes" is not a duration`,
		`{"url": "x", "tls_config": {"insecure_skip_verify": "yes"}}`:                          `field "tls_config.insecure_skip_verify": got a JSON string, want true or false`,
		`{"url": "x", "tls_config": {"insecure": true}}`:                                       `unknown field "insecure"`,
		`{"url": "x", "basic_auth": {"username": "u"}, "authorization": {"credentials": "c"}}`: `at most one of basic_auth, oauth2 & authorization`,
		`{"url": "x", "auth": {"bearer_token": 1}}`:                                            `field "auth.bearer_token": got a JSON number, want a string`,
		`{"url": "x",`:                          `end of JSON input`,
		`{"url": "x", "scrape_interval": "1m"}`: `unknown field "scrape_interval"`,
	} {
		var s Spec
		err := json.Unmarshal([]byte(body), &s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", body, err, want)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "Go struct") || strings.Contains(msg, "sources.") || strings.Contains(msg, "plain") || strings.Contains(msg, "config.HTTP") || strings.Contains(msg, "config.TLS") {
			t.Errorf("%s: %q names a Go type", body, msg)
		}
	}
}

// Over the API, a file on the relay's side, oauth2, proxies and headers are refused, naming the
// field as the client wrote it.
func TestSpecJSONRefusesLocalFilesAndOtherURLs(t *testing.T) {
	for body, field := range map[string]string{
		`{"url": "x", "bearer_token_file": "/f"}`:                              "bearer_token_file",
		`{"url": "x", "auth": {"bearer_token_file": "/f"}}`:                    "auth.bearer_token_file",
		`{"url": "x", "auth": {"ca_file": "/f"}}`:                              "auth.ca_file",
		`{"url": "x", "authorization": {"credentials_file": "/f"}}`:            "authorization.credentials_file",
		`{"url": "x", "authorization": {"credentials_ref": "r"}}`:              "authorization.credentials_ref",
		`{"url": "x", "basic_auth": {"username_file": "/f", "password": "p"}}`: "basic_auth.username_file",
		`{"url": "x", "basic_auth": {"username": "u", "password_file": "/f"}}`: "basic_auth.password_file",
		`{"url": "x", "tls_config": {"ca_file": "/f"}}`:                        "tls_config.ca_file",
		`{"url": "x", "tls_config": {"cert_file": "/f", "key": "k"}}`:          "tls_config.cert_file",
		`{"url": "x", "tls_config": {"cert": "c", "key_file": "/f"}}`:          "tls_config.key_file",
		`{"url": "x", "oauth2": {"client_id": "i", "token_url": "http://t"}}`:  "oauth2",
		`{"url": "x", "proxy_url": "http://p"}`:                                "proxy_url",
		`{"url": "x", "proxy_from_environment": true}`:                         "proxy_from_environment",
		`{"url": "x", "http_headers": {"X": {"values": ["v"]}}}`:               "http_headers",
	} {
		var s Spec
		err := json.Unmarshal([]byte(body), &s)
		if err == nil || !strings.Contains(err.Error(), `field "`+field+`" is not accepted through the API`) {
			t.Errorf("%s: %v; want %s refused", body, err, field)
		}
	}
}

// Encoding redacts every secret and the URL's password; what remains decodes again.
func TestSpecJSONRedactsSecrets(t *testing.T) {
	var s Spec
	if err := json.Unmarshal([]byte(`{"url": "http://op:urlpw@h:8080/m", "interval": "1m", "basic_auth": {"username": "u", "password": "basicpw"},
		"tls_config": {"cert": "C", "key": "keypem"}}`), &s); err != nil {
		t.Fatal(err)
	}
	s2 := s
	s2.HTTPClientConfig.BasicAuth = nil
	s2.HTTPClientConfig.Authorization = &config.Authorization{Type: "Bearer", Credentials: "tokpw"}
	for _, spec := range []Spec{s, s2} {
		b, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		out := string(b)
		for _, secret := range []string{"urlpw", "basicpw", "keypem", "tokpw"} {
			if strings.Contains(out, secret) {
				t.Errorf("encoded spec shows %q: %s", secret, out)
			}
		}
		if !strings.HasPrefix(out, `{"url":"http://op:xxxxx@h:8080/m","interval":"1m0s",`) || strings.Contains(out, "proxy_url") {
			t.Errorf("encoded spec: %s", out)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("the encoded spec does not decode: %v\n%s", err, out)
		}
	}
}

// Whatever decodes re-encodes without panicking, into JSON that decodes again, and no secret of
// the input survives encoding.
func FuzzSpecJSON(f *testing.F) {
	f.Add([]byte(`{"url": "http://u:p@h/m", "interval": "15s", "authorization": {"credentials": "c"}}`))
	f.Add([]byte(`{"url": "x", "auth": {"bearer_token": "t", "username": "u", "password": "p"}}`))
	f.Add([]byte(`{"url": "x", "tls_config": {"ca": "pem", "cert": "c", "key": "k", "min_version": "TLS12"}}`))
	f.Add([]byte(`{"url": "x", "basic_auth": {"username": "u", "password": "pw"}, "enable_http2": false}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Spec
		if err := json.Unmarshal(b, &s); err != nil {
			if len(err.Error()) > 1024 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("encoding a decoded spec: %v", err)
		}
		c := s.HTTPClientConfig
		for _, secret := range []config.Secret{authCredentials(c), basicPassword(c), c.TLSConfig.Key} {
			if len(secret) >= 4 && secret != "<secret>" && strings.Contains(string(out), string(secret)) && !strings.Contains(s.URL, string(secret)) {
				t.Fatalf("secret %q survives encoding: %s", secret, out)
			}
		}
		var back Spec
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("the encoded spec does not decode: %v\n%s", err, out)
		}
	})
}

func authCredentials(c config.HTTPClientConfig) config.Secret {
	if c.Authorization != nil {
		return c.Authorization.Credentials
	}
	return ""
}

func basicPassword(c config.HTTPClientConfig) config.Secret {
	if c.BasicAuth != nil {
		return c.BasicAuth.Password
	}
	return ""
}
