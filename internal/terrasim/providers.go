package terrasim

import "strings"

// provider is one integration the emulator offers.
type provider struct {
	Code string // Terra's upper-case name, e.g. OURA
	Name string // what the widget shows, e.g. Oura
}

// cloudProviders are connected through the widget (OAuth at the provider), in the order
// the widget lists them.
var cloudProviders = []provider{
	{"GARMIN", "Garmin"},
	{"FITBIT", "Fitbit"},
	{"OURA", "Oura"},
	{"WITHINGS", "Withings"},
	{"POLAR", "Polar"},
	{"SUUNTO", "Suunto"},
	{"COROS", "COROS"},
	{"WAHOO", "Wahoo"},
	{"GOOGLE", "Google Fit"},
	{"PELOTON", "Peloton"},
	{"WHOOP", "WHOOP"},
	{"ZWIFT", "Zwift"},
	{"EIGHT", "Eight Sleep"},
	{"DEXCOM", "Dexcom"},
	{"FREESTYLELIBRE", "FreeStyle Libre"},
	{"CONCEPT2", "Concept2"},
	{"CRONOMETER", "Cronometer"},
	{"TRAININGPEAKS", "TrainingPeaks"},
	{"ULTRAHUMAN", "Ultrahuman"},
	{"UNDERARMOUR", "Under Armour"},
	{"OMRON", "Omron"},
	{"HAMMERHEAD", "Hammerhead"},
	{"CATAPULT", "Catapult"},
	{"VALD", "VALD"},
}

// sdkProviders live on the phone and are connected through Terra's mobile SDKs, never
// through the widget.
var sdkProviders = []provider{
	{"APPLE", "Apple Health"},
	{"SAMSUNG", "Samsung Health"},
	{"HEALTH_CONNECT", "Health Connect"},
}

func lookupProvider(list []provider, code string) (provider, bool) {
	code = strings.ToUpper(strings.TrimSpace(code))
	for _, p := range list {
		if p.Code == code {
			return p, true
		}
	}
	return provider{}, false
}

func providerCodes(list []provider) []string {
	out := make([]string, len(list))
	for i, p := range list {
		out[i] = p.Code
	}
	return out
}

// defaultScopes are what a new connection is granted in the emulator.
const defaultScopes = "activity:read,sleep:read,daily:read"
