package limit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseRate reads a limit as operators write it in the environment
// (RATE_LIMIT_USER=60/m): "N/s", "N/m" or "N/h", optionally followed by ",burst=B".
// Without a burst, the whole allowance may be spent at once (Burst = N), which is what
// "60 a minute" means to most readers; the bucket then refills at N per unit. "0", "off"
// and a count of 0 disable the limit: enabled is false and the Config is empty.
func ParseRate(s string) (cfg Config, enabled bool, err error) {
	s = strings.TrimSpace(s)
	if s == "0" || strings.EqualFold(s, "off") {
		return Config{}, false, nil
	}
	if s == "" {
		// Empty is refused rather than read as "off": a limit should be turned off on
		// purpose, not by a variable that went missing.
		return Config{}, false, errors.New(`empty rate limit (want N/s, N/m or N/h, or "off")`)
	}
	spec, opts, hasOpts := strings.Cut(s, ",")
	countText, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return Config{}, false, fmt.Errorf("rate limit %q: want N/s, N/m or N/h", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(countText))
	if err != nil || count < 0 {
		return Config{}, false, fmt.Errorf("rate limit %q: count must be a whole number", s)
	}
	var per float64 // seconds
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "s":
		per = 1
	case "m":
		per = 60
	case "h":
		per = 3600
	default:
		return Config{}, false, fmt.Errorf("rate limit %q: unit must be s, m or h", s)
	}
	burst := count
	if hasOpts {
		name, value, _ := strings.Cut(opts, "=")
		if strings.TrimSpace(name) != "burst" {
			return Config{}, false, fmt.Errorf("rate limit %q: the only option is burst=B", s)
		}
		burst, err = strconv.Atoi(strings.TrimSpace(value))
		if err != nil || burst < 1 {
			return Config{}, false, fmt.Errorf("rate limit %q: burst must be a whole number of at least 1", s)
		}
	}
	if count == 0 {
		return Config{}, false, nil
	}
	return Config{Rate: float64(count) / per, Burst: burst}, true, nil
}

// Rate is a rate-limit setting as parsed from its text: a limiter's configuration, or off.
// The zero Rate is off.
type Rate struct {
	cfg  Config
	on   bool
	text string
}

// NewRate parses s as ParseRate does.
func NewRate(s string) (Rate, error) {
	cfg, on, err := ParseRate(s)
	if err != nil {
		return Rate{}, err
	}
	return Rate{cfg: cfg, on: on, text: strings.TrimSpace(s)}, nil
}

// MustRate is NewRate for settings written in the program, which must parse.
func MustRate(s string) Rate {
	r, err := NewRate(s)
	if err != nil {
		panic(err)
	}
	return r
}

// On reports whether the rate limits anything.
func (r Rate) On() bool { return r.on }

// String is the setting as it was written ("off" for the zero Rate).
func (r Rate) String() string {
	if r.text == "" {
		return "off"
	}
	return r.text
}

// Limiter is a new limiter at this rate, or nil (which allows everything) when it is off.
func (r Rate) Limiter() *Limiter {
	if !r.on {
		return nil
	}
	return New(r.cfg)
}
