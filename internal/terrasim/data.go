package terrasim

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/terragate/terragate/internal/terra"
)

// DataTypes are the data endpoints Terra answers for history, each a data event type.
var DataTypes = []string{"activity", "sleep", "body", "daily", "nutrition", "menstruation", "athlete"}

// Terra's limits on history requests, per Terra user.
const (
	// MaxRequestDays is the longest range one request may span.
	MaxRequestDays = 1825
	// HourlyRequestDays is how many requested days a user may have in a rolling hour.
	HourlyRequestDays = 6000
)

// ErrUnknownDataType is returned for a type that is not one of DataTypes.
var ErrUnknownDataType = errors.New("terrasim: unknown data type")

// errRangeTooLong is a request over MaxRequestDays.
var errRangeTooLong = fmt.Errorf("date range exceeds the maximum of %d days", MaxRequestDays)

// dataGrant is requested days charged to a user's rolling hour.
type dataGrant struct {
	at   time.Time
	days int
}

// dateLayout is Terra's YYYY-MM-DD.
const dateLayout = "2006-01-02"

// parseDate reads a YYYY-MM-DD (the start of that day, UTC) or unix seconds; endOfDay
// moves a YYYY-MM-DD to the start of the next day, so that an end date is inclusive.
func parseDate(v string, endOfDay bool) (time.Time, bool) {
	if t, err := time.Parse(dateLayout, v); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, true
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0).UTC(), true
	}
	return time.Time{}, false
}

// spanDays is how many days [start, end) covers, a part-day counting as one.
func spanDays(start, end time.Time) int {
	return max(1, int(math.Ceil(end.Sub(start).Hours()/24)))
}

// dataRequest serves GET {base}/{type}: the data itself when to_webhook=false, otherwise
// a small acknowledgement and the data as signed webhooks (in monthly chunks, announced
// by large_request_* events, past one calendar month).
func (e *Emulator) dataRequest(typ string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		q := r.URL.Query()
		userID := q.Get("user_id")
		if userID == "" {
			c.fail(w, r, http.StatusBadRequest, "user_id must be provided")
			return
		}
		start, ok := parseDate(q.Get("start_date"), false)
		if !ok {
			c.fail(w, r, http.StatusBadRequest, "start_date must be a date (YYYY-MM-DD) or unix seconds")
			return
		}
		end := e.now().UTC()
		if q.Has("end_date") {
			if end, ok = parseDate(q.Get("end_date"), true); !ok {
				c.fail(w, r, http.StatusBadRequest, "end_date must be a date (YYYY-MM-DD) or unix seconds")
				return
			}
		}
		if !end.After(start) {
			c.fail(w, r, http.StatusBadRequest, "end_date must be after start_date")
			return
		}
		toWebhook := true
		if v := q.Get("to_webhook"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				c.fail(w, r, http.StatusBadRequest, "to_webhook must be a boolean")
				return
			}
			toWebhook = b
		}
		if !toWebhook {
			u, data, err := e.syncData(userID, typ, start, end)
			if err != nil {
				e.dataError(w, r, c, err)
				return
			}
			out := map[string]any{"status": "success", "type": typ, "user": u, "data": data}
			if typ == "athlete" {
				out = map[string]any{"status": "success", "type": typ, "user": u, "athlete": athleteRecord()}
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		u, ref, chunks, err := e.sendData(userID, typ, start, end)
		if err != nil {
			e.dataError(w, r, c, err)
			return
		}
		out := map[string]any{"status": "success", "type": typ, "user": u, "reference": ref, "trace_id": ref}
		if chunks > 1 {
			out["message"] = "Large request submitted. The data is being processed and will be sent to your destination in chunks"
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// rateLimited is a request over a user's hourly budget; wait is until enough expires.
type rateLimited struct{ wait time.Duration }

func (rateLimited) Error() string { return "rate limit exceeded" }

func (e *Emulator) dataError(w http.ResponseWriter, r *http.Request, c *call, err error) {
	var rl rateLimited
	switch {
	case errors.As(err, &rl):
		secs := int(math.Ceil(rl.wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		w.Header().Set("X-Terra-RateLimit-Limit", strconv.Itoa(HourlyRequestDays))
		w.Header().Set("X-Terra-RateLimit-Remaining", "0")
		w.Header().Set("X-Terra-RateLimit-Reset", strconv.Itoa(max(secs, 1)))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"detail": "rate limit exceeded"})
	case errors.Is(err, ErrUnknownUser):
		c.fail(w, r, http.StatusNotFound, "user not found")
	default:
		c.fail(w, r, http.StatusBadRequest, err.Error())
	}
}

// chargeLocked takes days from the user's rolling hour, or says how long to wait.
func (e *Emulator) chargeLocked(userID string, days int) error {
	now := e.now()
	if e.grants == nil {
		e.grants = map[string][]dataGrant{}
	}
	gs := slices.DeleteFunc(e.grants[userID], func(g dataGrant) bool { return now.Sub(g.at) >= time.Hour })
	used := 0
	for _, g := range gs {
		used += g.days
	}
	if used+days > HourlyRequestDays {
		// Wait until the oldest grants that must expire for this request have.
		freed, wait := 0, time.Hour
		for _, g := range gs {
			freed += g.days
			if used-freed+days <= HourlyRequestDays {
				wait = g.at.Add(time.Hour).Sub(now)
				break
			}
		}
		e.grants[userID] = gs
		return rateLimited{wait: wait}
	}
	e.grants[userID] = append(gs, dataGrant{at: now, days: days})
	return nil
}

// checkDataLocked validates a request for one user and charges its days.
func (e *Emulator) checkDataLocked(userID, typ string, start, end time.Time) (terra.User, error) {
	if !slices.Contains(DataTypes, typ) {
		return terra.User{}, ErrUnknownDataType
	}
	days := spanDays(start, end)
	if days > MaxRequestDays {
		return terra.User{}, errRangeTooLong
	}
	if _, ok := e.users[userID]; !ok {
		return terra.User{}, ErrUnknownUser
	}
	if err := e.chargeLocked(userID, days); err != nil {
		return terra.User{}, err
	}
	return e.users[userID].user, nil
}

func (e *Emulator) syncData(userID, typ string, start, end time.Time) (terra.User, []map[string]any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, err := e.checkDataLocked(userID, typ, start, end)
	if err != nil {
		return u, nil, err
	}
	return u, dataRecords(u, typ, start, end), nil
}

// Backfill plays Terra answering a history request for the last days days of typ for a
// user, with to_webhook: the data follows as webhooks. It returns the terra-reference.
// Terra's limits apply as they do over HTTP.
func (e *Emulator) Backfill(userID, typ string, days int) (reference string, err error) {
	if days < 1 {
		return "", errors.New("terrasim: days must be at least 1")
	}
	end := e.now().UTC()
	_, ref, _, err := e.sendData(userID, typ, end.AddDate(0, 0, -days), end)
	return ref, err
}

// sendData checks and charges a request, then emits its data events: one event when
// [start, end) lies in one calendar month, otherwise large_request_processing,
// large_request_sending with expected_payloads and one chunk per month, all sharing the
// reference, each chunk traced as <id>:chunk:<n>.
func (e *Emulator) sendData(userID, typ string, start, end time.Time) (terra.User, string, int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, err := e.checkDataLocked(userID, typ, start, end)
	if err != nil {
		return u, "", 0, err
	}
	u = e.touchLocked(userID)
	ref := uuid.NewString()
	if typ == "athlete" {
		e.emitTracedLocked(map[string]any{"type": typ, "user": u, "athlete": athleteRecord(), "version": eventVersion},
			uuid.NewString(), ref)
		return u, ref, 1, nil
	}
	var bounds [][2]time.Time
	for cur := start; cur.Before(end); {
		next := time.Date(cur.Year(), cur.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		bounds = append(bounds, [2]time.Time{cur, minTime(next, end)})
		cur = next
	}
	if len(bounds) == 1 {
		e.emitTracedLocked(dataEvent(u, typ, start, end), uuid.NewString(), ref)
		return u, ref, 1, nil
	}
	e.emitTracedLocked(map[string]any{
		"type": "large_request_processing", "status": "processing", "user": u, "reference": ref,
		"message": "Large request is being processed; payloads will be delivered when ready",
	}, uuid.NewString(), ref)
	e.emitTracedLocked(map[string]any{
		"type": "large_request_sending", "user": u, "reference": ref, "expected_payloads": len(bounds),
		"message": "Large request payloads are being sent",
	}, uuid.NewString(), ref)
	trace := uuid.NewString()
	for n, b := range bounds {
		e.emitTracedLocked(dataEvent(u, typ, b[0], b[1]), fmt.Sprintf("%s:chunk:%d", trace, n+1), ref)
	}
	return u, ref, len(bounds), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func dataEvent(u terra.User, typ string, start, end time.Time) map[string]any {
	return map[string]any{"type": typ, "user": u, "data": dataRecords(u, typ, start, end), "version": eventVersion}
}

// dataRecords makes one record a day, starting at each day of [start, end). Summary ids
// are stable per user, type and day, so asking again yields copies that overwrite.
func dataRecords(u terra.User, typ string, start, end time.Time) []map[string]any {
	out := []map[string]any{}
	day := time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC)
	for ; day.Before(end); day = day.AddDate(0, 0, 1) {
		from, to := day, day.AddDate(0, 0, 1)
		switch typ {
		case "activity":
			from, to = day.Add(7*time.Hour), day.Add(7*time.Hour+45*time.Minute)
		case "sleep":
			from, to = day.Add(22*time.Hour), day.Add(30*time.Hour)
		}
		md := map[string]any{
			"start_time":  from.Format(terra.TimeFormat),
			"end_time":    to.Format(terra.TimeFormat),
			"upload_type": 1,
			"summary_id":  uuid.NewSHA1(uuid.NameSpaceOID, []byte(u.UserID+"/"+typ+"/"+day.Format(dateLayout))).String(),
		}
		rec := map[string]any{"metadata": md}
		switch typ {
		case "activity":
			md["name"], md["type"] = "Morning Run", 8
			rec["distance_data"] = map[string]any{"summary": map[string]any{"distance_meters": 8250.4, "steps": 7902}}
			rec["calories_data"] = map[string]any{"total_burned_calories": 512.5}
		case "sleep":
			rec["sleep_durations_data"] = map[string]any{"asleep": map[string]any{"duration_asleep_state_seconds": 26400}}
		case "daily":
			rec["distance_data"] = map[string]any{"steps": 9120}
			rec["calories_data"] = map[string]any{"total_burned_calories": 2310}
		case "body":
			rec["measurements_data"] = map[string]any{"measurements": []map[string]any{{"weight_kg": 71.5}}}
		case "nutrition":
			rec["summary"] = map[string]any{"macros": map[string]any{"calories": 2100}}
		case "menstruation":
			rec["menstruation_data"] = map[string]any{"period_length_days": 5}
		}
		out = append(out, rec)
	}
	return out
}

func athleteRecord() map[string]any {
	return map[string]any{"first_name": "Ada", "last_name": "Lovelace", "gender": "female", "sex": "female",
		"date_of_birth": "1990-12-10", "country": "GB"}
}
