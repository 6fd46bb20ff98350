package sources

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/alecthomas/units"
)

// APIPath is where the sources API lives: GET APIPath, PUT and DELETE APIPath + "/<name>".
const APIPath = "/api/v1/sources"

// maxSpecBytes bounds a PUT body.
const maxSpecBytes = 64 << 10

// ListHandler answers GET /api/v1/sources: {"sources": [...]}, secrets redacted. It is open:
// Prometheus and the status page's readers see the sources' health.
func ListHandler(m *Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"sources": m.List()})
	})
}

// PutHandler answers PUT /api/v1/sources/{name} with a JSON Spec body: 201 for a new source, 200
// for a replaced one, with the source's status after its first scrape; 400 naming the field when
// the body is wrong or the URL is not one the API may reach; 403 when the API is off (no write
// token) or full; 409 for a name the operator's sources use; 413 for a body over 64 KiB; 429 when
// sources change faster than they may be scraped.
func PutHandler(m *Manager, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = m.log
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !m.opts.API {
			apiError(w, http.StatusForbidden, errAPIOff.Error())
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSpecBytes))
		if err != nil {
			apiError(w, http.StatusRequestEntityTooLarge, "source "+strconv.Quote(shorten(name, 140))+": body larger than "+units.Base2Bytes(maxSpecBytes).String())
			return
		}
		created, err := m.PutJSON(r.Context(), name, b)
		if err != nil {
			code := http.StatusBadRequest
			var re *Error
			if errors.As(err, &re) {
				code = re.Code
			}
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "5")
			}
			logger.Debug("source refused", "pull_source", shorten(name, 140), "code", code, "err", err, "remote", r.RemoteAddr)
			apiError(w, code, err.Error())
			return
		}
		st, _ := m.Get(name)
		code := http.StatusOK
		if created {
			code = http.StatusCreated
		}
		logger.Debug("source put through the API", "pull_source", name, "created", created, "remote", r.RemoteAddr)
		writeJSON(w, code, st)
	})
}

// DeleteHandler answers DELETE /api/v1/sources/{name}: 204; 403 when the API is off, 404 for an
// unknown source, 409 for a source the operator configured.
func DeleteHandler(m *Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.Delete(r.PathValue("name")); err != nil {
			code := http.StatusBadRequest
			var re *Error
			if errors.As(err, &re) {
				code = re.Code
			}
			apiError(w, code, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
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
