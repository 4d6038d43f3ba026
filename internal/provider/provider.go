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

	mu        sync.Mutex // held while fetching, so concurrent misses make one call
	cached    []Provider
	fetchedAt time.Time
}

// NewCatalog returns a catalog whose list is fresh for ttl.
func NewCatalog(t Terra, ttl time.Duration, log *slog.Logger) *Catalog {
	return &Catalog{terra: t, ttl: ttl, log: log, now: time.Now}
}

// List returns the providers, from the cache while it is fresh. When Terra fails, a stale
// list is better than none; with no list at all, the error is returned.
func (c *Catalog) List(ctx context.Context) ([]Provider, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached != nil && c.now().Sub(c.fetchedAt) < c.ttl {
		return c.cached, nil
	}
	in, err := c.terra.Integrations(ctx)
	if err != nil {
		if c.cached != nil {
			c.log.WarnContext(ctx, "serving a stale provider list", "age", c.now().Sub(c.fetchedAt).Round(time.Second), "err", err)
			return c.cached, nil
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
	c.cached, c.fetchedAt = list, c.now()
	return list, nil
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
