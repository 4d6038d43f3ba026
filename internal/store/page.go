package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Page asks for one page of an admin listing, the Relay way: the First items after the
// cursor After ("" for the first page). Listings page by keyset, so a page never repeats or
// skips an item because others were added meanwhile.
type Page struct {
	First int
	After string // an EndCursor from the page before
}

// MaxPageSize is the largest Page.First.
const MaxPageSize = 100

// CheckPage refuses a page size outside 1..MaxPageSize.
func CheckPage(p Page) error {
	if p.First < 1 || p.First > MaxPageSize {
		return &ArgumentError{Arg: "first", Reason: fmt.Sprintf("a page size of %d; want 1 to %d", p.First, MaxPageSize)}
	}
	return nil
}

// The bounds of the time keys: every stored time lies in [minTime, maxTime), so they stand
// for "no bound" and "no cursor yet" in keyset queries. Both engines order them as times.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
)

const maxID = math.MaxInt64

// PageOf cuts rows fetched with a limit of First+1 down to the page, and reports its end
// cursor and whether more rows follow.
func PageOf[T any](rows []T, p Page, cursorOf func(T) string) (items []T, end string, more bool) {
	if len(rows) > p.First {
		rows, more = rows[:p.First], true
	}
	if len(rows) > 0 {
		end = cursorOf(rows[len(rows)-1])
	}
	return rows, end, more
}

// Cursor kinds: a cursor of one listing is refused by another.
const (
	cursorAudit = "audit"
	cursorUsers = "users"
	cursorInbox = "inbox"
	cursorRelay = "relay"
)

// cursor is the sort key of the last item of a page. Callers see it as opaque text
// (base64url of JSON); it is not signed, and needs no signing: it only says where to resume,
// and every listing applies its filters and the caller's rights afresh.
type cursor struct {
	Kind string    `json:"k"`
	At   time.Time `json:"t,omitzero"`
	ID   int64     `json:"i,omitempty"`
	Key  string    `json:"s,omitempty"`
}

func encodeCursor(c cursor) string {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("store: marshal cursor: %v", err)) // strings, a time and an int
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxCursor bounds the length of a cursor: a real one is well under it.
const maxCursor = 512

// decodeCursor reads a cursor of the given kind, with the fields that kind has; anything
// else is ErrInvalid.
func decodeCursor(s, kind string) (cursor, error) {
	var c cursor
	ok := len(s) <= maxCursor
	if ok {
		b, err := base64.RawURLEncoding.DecodeString(s)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		ok = err == nil && dec.Decode(&c) == nil && !dec.More() && c.Kind == kind &&
			!c.At.Before(minTime) && c.At.Before(maxTime)
	}
	switch kind {
	case cursorAudit:
		ok = ok && c.ID > 0 && c.Key == ""
	case cursorUsers:
		ok = ok && c.ID == 0 && c.Key != ""
	case cursorInbox, cursorRelay:
		ok = ok && c.ID > 0 && c.Key == "" && c.At.IsZero()
	}
	if !ok {
		return cursor{}, &ArgumentError{Arg: "after", Reason: "not a cursor of this listing; want the end cursor of one of its pages"}
	}
	c.At = StoredTime(c.At)
	return c, nil
}

// UserFilter narrows ListTerraUsersPage. Empty fields match any Terra user.
type UserFilter struct {
	ReferenceID string
	Provider    string
	Status      ConnectionStatus
}

// UserPage is one page of ListTerraUsersPage, in (ConnectedAt, UserID) order.
type UserPage struct {
	Users       []TerraUser
	EndCursor   string // the cursor of the last user, to pass as Page.After; "" when empty
	HasNextPage bool
	TotalCount  int // Terra users matching the filter, on every page
}

// UserQuery is what an engine needs to run ListTerraUsersPage.
type UserQuery struct {
	UserFilter
	AfterAt     time.Time // resume after (AfterAt, AfterUserID)
	AfterUserID string
	Limit       int // the page's First plus one
}

// CheckUserQuery validates a ListTerraUsersPage request and resolves its cursor.
func CheckUserQuery(f UserFilter, p Page) (UserQuery, error) {
	if err := CheckPage(p); err != nil {
		return UserQuery{}, err
	}
	if f.Status != "" && !f.Status.Valid() {
		return UserQuery{}, &ArgumentError{Arg: "status", Reason: fmt.Sprintf("unknown status %q", f.Status)}
	}
	q := UserQuery{UserFilter: f, AfterAt: minTime, Limit: p.First + 1}
	if p.After != "" {
		c, err := decodeCursor(p.After, cursorUsers)
		if err != nil {
			return UserQuery{}, err
		}
		q.AfterAt, q.AfterUserID = c.At, c.Key
	}
	return q, nil
}

// UserCursor is the opaque cursor that resumes ListTerraUsersPage after u.
func UserCursor(u TerraUser) string {
	return encodeCursor(cursor{Kind: cursorUsers, At: u.ConnectedAt, Key: u.UserID})
}

// InboxFilter narrows ListWebhookEvents. Empty fields match any delivery.
type InboxFilter struct {
	Type    string         // Terra's event type, as received
	Source  DeliverySource // empty matches every source, not only webhooks
	Outcome string         // one of the InboxOutcome values
}

// InboxPage is one page of ListWebhookEvents, newest delivery first. There is no total
// count: the inbox only grows, and counting it is a scan of its whole index.
type InboxPage struct {
	Events      []InboxEvent
	EndCursor   string // the cursor of the last event, to pass as Page.After; "" when empty
	HasNextPage bool
}

// InboxQuery is what an engine needs to run ListWebhookEvents.
type InboxQuery struct {
	InboxFilter
	BeforeID int64 // resume below this id
	Limit    int   // the page's First plus one
}

// CheckInboxQuery validates a ListWebhookEvents request and resolves its cursor.
func CheckInboxQuery(f InboxFilter, p Page) (InboxQuery, error) {
	if err := CheckPage(p); err != nil {
		return InboxQuery{}, err
	}
	if f.Source != "" && !f.Source.Valid() {
		return InboxQuery{}, &ArgumentError{Arg: "source", Reason: fmt.Sprintf("unknown source %q; want webhook, redirect, api or sync", f.Source)}
	}
	if f.Outcome != "" && !InboxOutcome(f.Outcome).Valid() {
		return InboxQuery{}, &ArgumentError{Arg: "outcome", Reason: fmt.Sprintf("unknown outcome %q; want applied, unchanged, ignored or failed", f.Outcome)}
	}
	q := InboxQuery{InboxFilter: f, BeforeID: maxID, Limit: p.First + 1}
	if p.After != "" {
		c, err := decodeCursor(p.After, cursorInbox)
		if err != nil {
			return InboxQuery{}, err
		}
		q.BeforeID = c.ID
	}
	return q, nil
}

// InboxCursor is the opaque cursor that resumes ListWebhookEvents after e.
func InboxCursor(e InboxEvent) string {
	return encodeCursor(cursor{Kind: cursorInbox, ID: e.ID})
}
