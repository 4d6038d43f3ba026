// Package provider lists the providers Terra offers, from Terra's integrations endpoint,
// cached and served stale when Terra is down: a "connect a device" menu should not break
// because Terra had a bad minute.
package provider

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/terragate/terragate/internal/terra"
)

// Provider is one provider Terra offers.
type Provider struct {
	Name        string // Terra's name, e.g. OURA
	DisplayName string // a name for people, e.g. Oura
	SDKOnly     bool   // connected through Terra's mobile SDK, not the widget
}

// Terra is the part of the Terra client the catalog needs.
type Terra interface {
	Integrations(ctx context.Context) (terra.Integrations, error)
}

// Catalog caches Terra's provider list.
type Catalog struct {
	terra Terra
	ttl   time.Duration
	log   *slog.Logger
	now   func() time.Time

	// refresh makes concurrent misses share one Terra call. The cache's lock is never held
	// across that call: when Terra hangs, readers of a stale list must not queue behind it.
	refresh singleflight.Group

	mu        sync.Mutex // guards cached and fetchedAt
	cached    []Provider
	fetchedAt time.Time
}

// NewCatalog returns a catalog whose list is fresh for ttl.
func NewCatalog(t Terra, ttl time.Duration, log *slog.Logger) *Catalog {
	return &Catalog{terra: t, ttl: ttl, log: log, now: time.Now}
}

// List returns the providers, from the cache while it is fresh. A stale list is returned at
// once while one refresh runs behind it (a list an hour old beats a menu that waits on
// Terra); with no list at all, List waits for Terra and returns its error.
func (c *Catalog) List(ctx context.Context) ([]Provider, error) {
	c.mu.Lock()
	list, at := c.cached, c.fetchedAt
	c.mu.Unlock()
	if list != nil && c.now().Sub(at) < c.ttl {
		return list, nil
	}
	// The refresh outlives the request that started it (others may be waiting on it, and a
	// stale reader does not wait at all); the Terra client bounds it with its own timeout.
	// WithoutCancel keeps the request's values, so its log lines carry the request id.
	done := c.refresh.DoChan("integrations", func() (any, error) {
		return c.fetch(context.WithoutCancel(ctx), list != nil)
	})
	if list != nil {
		return list, nil
	}
	select {
	case r := <-done:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]Provider), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch asks Terra for the list and caches it. stale says a cached list is being served
// meanwhile, so a failure is only logged.
func (c *Catalog) fetch(ctx context.Context, stale bool) ([]Provider, error) {
	in, err := c.terra.Integrations(ctx)
	if err != nil {
		if stale {
			c.mu.Lock()
			age := c.now().Sub(c.fetchedAt)
			c.mu.Unlock()
			c.log.WarnContext(ctx, "serving a stale provider list", "age", age.Round(time.Second), "err", err)
		}
		return nil, err
	}
	list := make([]Provider, 0, len(in.Providers)+len(in.SDKProviders))
	for _, name := range in.Providers {
		list = append(list, Provider{Name: strings.ToUpper(name), DisplayName: DisplayName(name)})
	}
	for _, name := range in.SDKProviders {
		list = append(list, Provider{Name: strings.ToUpper(name), DisplayName: DisplayName(name), SDKOnly: true})
	}
	slices.SortStableFunc(list, func(a, b Provider) int { return strings.Compare(a.DisplayName, b.DisplayName) })
	c.mu.Lock()
	c.cached, c.fetchedAt = list, c.now()
	c.mu.Unlock()
	return list, nil
}

// knownSDKOnly are the sources Terra reaches only through its mobile SDKs, whatever Terra's
// list says or whether it has been read: deciding whose connection an SDK source is must
// not wait for, or depend on, a call to Terra.
var knownSDKOnly = []string{"APPLE", "SAMSUNG", "HEALTH_CONNECT"}

// KnownSDKOnly reports whether name is one of the sources Terra reaches only through its
// mobile SDKs (Apple Health, Samsung Health, Health Connect), without asking Terra.
func KnownSDKOnly(name string) bool {
	return slices.Contains(knownSDKOnly, strings.ToUpper(strings.TrimSpace(name)))
}

// SDKOnly reports whether name is reached only through Terra's mobile SDKs: one of
// KnownSDKOnly, or listed among Terra's sdk_providers and not among its widget providers
// in the list last read. It never calls Terra.
func (c *Catalog) SDKOnly(name string) bool {
	name = strings.ToUpper(strings.TrimSpace(name))
	if KnownSDKOnly(name) {
		return true
	}
	c.mu.Lock()
	list := c.cached
	c.mu.Unlock()
	sdk, widget := false, false
	for _, p := range list {
		if p.Name == name {
			sdk, widget = sdk || p.SDKOnly, widget || !p.SDKOnly
		}
	}
	return sdk && !widget
}

// displayNames holds names that are not the provider's name in title case.
var displayNames = map[string]string{
	"APPLE":          "Apple Health",
	"SAMSUNG":        "Samsung Health",
	"HEALTH_CONNECT": "Health Connect",
	"GOOGLE":         "Google Fit",
	"OMRONUS":        "Omron (US)",
	"EIGHT":          "Eight Sleep",
	"UNDERARMOUR":    "Under Armour",
	"VALD":           "VALD",
	"TRAININGPEAKS":  "TrainingPeaks",
	"FREESTYLELIBRE": "FreeStyle Libre",
	"MYFITNESSPAL":   "MyFitnessPal",
	"WHOOP":          "WHOOP",
	"COROS":          "COROS",
	"TEMPO":          "Tempo",
}

// DisplayName is a name for people: OURA -> Oura, HEALTH_CONNECT -> Health Connect.
func DisplayName(name string) string {
	name = strings.ToUpper(strings.TrimSpace(name))
	if d, ok := displayNames[name]; ok {
		return d
	}
	words := strings.Split(strings.ReplaceAll(name, "_", " "), " ")
	for i, w := range words {
		if w != "" {
			words[i] = w[:1] + strings.ToLower(w[1:])
		}
	}
	return strings.Join(words, " ")
}
