package relay

import "github.com/prometheus/common/version"

// Version is the relay's version, set at build time through prometheus/common/version's ldflags
// (-X github.com/prometheus/common/version.Version=...); "dev" otherwise.
func Version() string {
	if version.Version == "" {
		return "dev"
	}
	return version.Version
}
