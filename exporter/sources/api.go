package sources

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// APIPath is where the sources API lives: GET APIPath, PUT and DELETE APIPath + "/<name>".
const APIPath = "/api/v1/sources"

// maxSpecBytes bounds a PUT body.
const maxSpecBytes = 64 << 10

// ListHandler answers GET /api/v1/sources: {"sources": [...]}, secrets redacted.
func ListHandler(m *Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"sources": m.List()})
	})
}

// PutHandler answers PUT /api/v1/sources/{name} with a JSON Spec body. It answers 201 for a new
// source, 200 for a replaced one, with the source's status after its first scrape; 400 with a
// message naming the field when the body is wrong.
func PutHandler(m *Manager, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSpecBytes))
		if err != nil {
			apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("source %q: body larger than %d bytes", name, maxSpecBytes))
			return
		}
		var spec Spec
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("source %q: body: %v (want {\"url\": \"http://host:port/metrics\", \"interval\": \"15s\", \"auth\": {...}})", name, jsonMsg(err)))
			return
		}
		created, err := m.Put(name, spec, "api", true)
		if err != nil {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("source %q: %v", name, err))
			return
		}
		st, _ := m.Get(name)
		code := http.StatusOK
		if created {
			code = http.StatusCreated
		}
		logger.Debug("source put through the API", "source", name, "created", created, "remote", r.RemoteAddr)
		writeJSON(w, code, st)
	})
}

// DeleteHandler answers DELETE /api/v1/sources/{name}: 204, or 404 for an unknown source.
func DeleteHandler(m *Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !m.Delete(name) {
			apiError(w, http.StatusNotFound, fmt.Sprintf("no source named %q", name))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func jsonMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q: want a %s", te.Field, te.Type)
	}
	return err.Error()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
