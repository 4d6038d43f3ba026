package buildinfo

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFrom(t *testing.T) {
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want Info
	}{
		{"no build info", nil, Info{Version: "(devel)"}},
		{"a tagged release", &debug.BuildInfo{
			GoVersion: "go1.26.1",
			Main:      debug.Module{Path: "github.com/terragate/terragate", Version: "v1.4.0"},
			Settings: []debug.BuildSetting{
				{Key: "-trimpath", Value: "true"},
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: "56925b6f0c1d2e3f4a5b6c7d8e9f00112233aabb"},
				{Key: "vcs.time", Value: "2026-11-25T10:00:00Z"},
				{Key: "vcs.modified", Value: "false"},
			},
		}, Info{Version: "v1.4.0", GoVersion: "go1.26.1", Revision: "56925b6f0c1d2e3f4a5b6c7d8e9f00112233aabb", Time: "2026-11-25T10:00:00Z"}},
		{"a local build with changes", &debug.BuildInfo{
			GoVersion: "go1.26.1",
			Main:      debug.Module{Path: "github.com/terragate/terragate", Version: "v0.0.0-20261125100000-56925b6f0c1d+dirty"},
			Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "56925b6f0c1d"}, {Key: "vcs.modified", Value: "true"}},
		}, Info{Version: "v0.0.0-20261125100000-56925b6f0c1d+dirty", GoVersion: "go1.26.1", Revision: "56925b6f0c1d", Modified: true}},
		{"no version recorded", &debug.BuildInfo{GoVersion: "go1.26.1"}, Info{Version: "(devel)", GoVersion: "go1.26.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := From(tt.bi); got != tt.want {
				t.Errorf("From = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadNamesThisToolchain(t *testing.T) {
	if got := Read().GoVersion; got != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", got, runtime.Version())
	}
}

func TestWriteVersion(t *testing.T) {
	tests := []struct {
		info Info
		want string
	}{
		{Info{Version: "(devel)", GoVersion: "go1.26.1"}, "terragate (devel)\ngo        go1.26.1\n"},
		{
			Info{Version: "v1.4.0", GoVersion: "go1.26.1", Revision: "56925b6f", Time: "2026-11-25T10:00:00Z", Modified: true},
			"terragate v1.4.0\ngo        go1.26.1\ncommit    56925b6f (with uncommitted changes)\ncommitted 2026-11-25T10:00:00Z\n",
		},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := tt.info.Write(&b); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("Write(%+v) =\n%s\nwant\n%s", tt.info, b.String(), tt.want)
		}
	}
}
