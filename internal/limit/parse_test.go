package limit

import "testing"

func TestParseRate(t *testing.T) {
	tests := []struct {
		in          string
		want        Config
		wantEnabled bool
		wantErr     bool
	}{
		{in: "60/m", want: Config{Rate: 1, Burst: 60}, wantEnabled: true},
		{in: "300/m", want: Config{Rate: 5, Burst: 300}, wantEnabled: true},
		{in: "10/m,burst=2", want: Config{Rate: 10.0 / 60, Burst: 2}, wantEnabled: true},
		{in: " 5 / s , burst = 1 ", want: Config{Rate: 5, Burst: 1}, wantEnabled: true},
		{in: "3600/H", want: Config{Rate: 1, Burst: 3600}, wantEnabled: true},
		{in: "0"},
		{in: "off"},
		{in: "OFF"},
		{in: "0/m"},
		{in: "", wantErr: true},
		{in: "60", wantErr: true},
		{in: "60/d", wantErr: true},
		{in: "1.5/s", wantErr: true},
		{in: "-1/s", wantErr: true},
		{in: "x/s", wantErr: true},
		{in: "60/m,burst=0", wantErr: true},
		{in: "60/m,burst=", wantErr: true},
		{in: "60/m,size=3", wantErr: true},
		{in: "60/m,burst=2,burst=3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, enabled, err := ParseRate(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseRate(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got.Rate != tt.want.Rate || got.Burst != tt.want.Burst || got.MaxKeys != 0 || got.Now != nil || enabled != tt.wantEnabled {
				t.Fatalf("ParseRate(%q) = %+v, %v; want %+v, %v", tt.in, got, enabled, tt.want, tt.wantEnabled)
			}
		})
	}
}

func TestRate(t *testing.T) {
	r, err := NewRate(" 60/m ")
	if err != nil || !r.On() || r.String() != "60/m" || r.Limiter() == nil {
		t.Fatalf("60/m: %+v %v", r, err)
	}
	for _, s := range []string{"off", "0", "0/m"} {
		r, err := NewRate(s)
		if err != nil || r.On() || r.Limiter() != nil {
			t.Errorf("%q: %+v %v, want off with no limiter", s, r, err)
		}
	}
	if _, err := NewRate("60/fortnight"); err == nil {
		t.Error("60/fortnight parsed")
	}
	if (Rate{}).String() != "off" || (Rate{}).Limiter() != nil {
		t.Error("the zero Rate is not off")
	}
}
