package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2026, 7, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	a, err := CheckAuditQuery(AuditFilter{}, Page{First: 1, After: AuditCursor(AuditEntry{ID: 42, At: at})})
	if err != nil || !a.BeforeAt.Equal(StoredTime(at)) || a.BeforeAt.Location() != time.UTC || a.BeforeID != 42 {
		t.Errorf("audit cursor read back as %v, %d, %v; want %v, 42", a.BeforeAt, a.BeforeID, err, StoredTime(at))
	}
	u, err := CheckUserQuery(UserFilter{}, Page{First: 1, After: UserCursor(TerraUser{UserID: "u|\"é", ConnectedAt: at})})
	if err != nil || !u.AfterAt.Equal(StoredTime(at)) || u.AfterUserID != "u|\"é" {
		t.Errorf("user cursor read back as %v, %q, %v", u.AfterAt, u.AfterUserID, err)
	}
	i, err := CheckInboxQuery(InboxFilter{}, Page{First: 1, After: InboxCursor(InboxEvent{ID: 7})})
	if err != nil || i.BeforeID != 7 {
		t.Errorf("inbox cursor read back as %d, %v", i.BeforeID, err)
	}
	// Without a cursor, pages start at the ends of the keys.
	a, _ = CheckAuditQuery(AuditFilter{}, Page{First: 1})
	u, _ = CheckUserQuery(UserFilter{}, Page{First: 1})
	i, _ = CheckInboxQuery(InboxFilter{}, Page{First: 1})
	if a.BeforeAt != maxTime || a.BeforeID != maxID || u.AfterAt != minTime || u.AfterUserID != "" || i.BeforeID != maxID {
		t.Errorf("first pages start at %v/%d, %v/%q, %d", a.BeforeAt, a.BeforeID, u.AfterAt, u.AfterUserID, i.BeforeID)
	}
	for _, c := range []string{AuditCursor(AuditEntry{ID: 1, At: at}), UserCursor(TerraUser{UserID: "u", ConnectedAt: at}), InboxCursor(InboxEvent{ID: 1})} {
		if strings.ContainsAny(c, "+/=") {
			t.Errorf("cursor %q is not URL-safe", c)
		}
	}
}

func TestPageOf(t *testing.T) {
	key := func(n int) string { return string(rune('a' + n)) }
	for _, tc := range []struct {
		rows  []int
		first int
		n     int
		end   string
		more  bool
	}{
		{nil, 3, 0, "", false},
		{[]int{0, 1}, 3, 2, "b", false},
		{[]int{0, 1, 2}, 3, 3, "c", false},
		{[]int{0, 1, 2, 3}, 3, 3, "c", true},
	} {
		items, end, more := PageOf(tc.rows, Page{First: tc.first}, key)
		if len(items) != tc.n || end != tc.end || more != tc.more {
			t.Errorf("PageOf(%v, %d) = %v, %q, %v; want %d items, %q, %v", tc.rows, tc.first, items, end, more, tc.n, tc.end, tc.more)
		}
	}
}

func TestCheckAuditNormalizes(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 999, time.UTC)
	detail := map[string]string{"k": "v"}
	e, err := CheckAudit(AuditEntry{ID: 5, Actor: "svc:ops", ActorKind: ActorService, Action: ActionAdminRead,
		ClientIP: "::ffff:10.0.0.1", Detail: detail}, now)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != 0 || !e.At.Equal(StoredTime(now)) || e.ClientIP != "10.0.0.1" {
		t.Errorf("CheckAudit = %+v", e)
	}
	detail["k"] = "changed"
	if e.Detail["k"] != "v" {
		t.Error("CheckAudit kept the caller's Detail map")
	}
	if _, err := CheckAudit(AuditEntry{Actor: "svc:ops", ActorKind: ActorUser, Action: ActionAdminRead}, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("user actor with the service prefix: %v; want ErrInvalid", err)
	}
	if string(AuditDetailJSON(nil)) != "{}" {
		t.Errorf("AuditDetailJSON(nil) = %s; want {}", AuditDetailJSON(nil))
	}
	if d, err := ParseAuditDetail([]byte(`{"a":"1","b":"2"}`)); err != nil || len(d) != 2 {
		t.Errorf("ParseAuditDetail = %v, %v", d, err)
	}
}
