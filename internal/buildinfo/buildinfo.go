// Package buildinfo says which build of terragate is running: the module version and the
// commit it was built from, as the Go toolchain recorded them in the binary, for
// `terragate version` and the terragate_build_info metric.
package buildinfo

import (
	"fmt"
	"io"
	"runtime/debug"
)

// Info is what the toolchain recorded about this build. Revision, Time and Modified are
// empty when the binary was built outside a checkout (or with -buildvcs=false).
type Info struct {
	// Version is the module version: a tag such as v1.2.0, a pseudo-version derived from
	// the commit, or "(devel)" when the toolchain could not tell.
	Version string
	// GoVersion is the toolchain that built the binary, such as go1.26.0.
	GoVersion string
	// Revision is the commit, Time its commit time (RFC 3339), Modified whether the
	// working tree had uncommitted changes.
	Revision string
	Time     string
	Modified bool
}

// Read returns this binary's build information.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return From(bi)
}

// From extracts Info from what debug.ReadBuildInfo returned (nil when the binary carries
// none).
func From(bi *debug.BuildInfo) Info {
	info := Info{Version: "(devel)"}
	if bi == nil {
		return info
	}
	info.GoVersion = bi.GoVersion
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// Write prints info as `terragate version` shows it: the version, the Go toolchain and,
// when the binary was built from a checkout, the commit.
func (info Info) Write(w io.Writer) error {
	fmt.Fprintf(w, "terragate %s\n", info.Version)
	fmt.Fprintf(w, "go        %s\n", info.GoVersion)
	if info.Revision != "" {
		modified := ""
		if info.Modified {
			modified = " (with uncommitted changes)"
		}
		fmt.Fprintf(w, "commit    %s%s\n", info.Revision, modified)
	}
	if info.Time != "" {
		fmt.Fprintf(w, "committed %s\n", info.Time)
	}
	return nil
}
