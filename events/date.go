package events

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"time"
)

// Date is a calendar date without time or zone, as meetings and memberships
// are recorded ("2018-12-10"). The zero Date encodes as null.
type Date struct{ t time.Time }

const dateLayout = "2006-01-02"

// ParseDate reads a date in ISO 8601 calendar form (YYYY-MM-DD).
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return Date{}, fmt.Errorf("date %q: want YYYY-MM-DD", s)
	}
	return Date{t}, nil
}

// DateOf returns the calendar date of t in UTC.
func DateOf(t time.Time) Date {
	y, m, d := t.UTC().Date()
	return Date{time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
}

// UnixDays is the date as days since 1970-01-01 (negative before it; the
// zero Date is a day of year 1).
func (d Date) UnixDays() int32 {
	s := d.t.Unix()
	days := s / 86400
	if s%86400 < 0 {
		days--
	}
	return int32(days)
}

// DateOfUnixDays is the date n days after 1970-01-01: the inverse of
// UnixDays, the zero Date included.
func DateOfUnixDays(n int32) Date { return Date{time.Unix(int64(n)*86400, 0).UTC()} }

// IsZero reports whether the date is unset.
func (d Date) IsZero() bool { return d.t.IsZero() }

// Time is the date at midnight UTC.
func (d Date) Time() time.Time { return d.t }

// Before reports whether d is strictly before o.
func (d Date) Before(o Date) bool { return d.t.Before(o.t) }

// String formats the date as YYYY-MM-DD, or "" when unset.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.t.Format(dateLayout)
}

// MarshalJSON encodes the date as "YYYY-MM-DD", or null when unset.
func (d Date) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON accepts "YYYY-MM-DD" or null.
func (d *Date) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = Date{}
		return nil
	}
	// A *json.UnmarshalTypeError lets the decoder name the field.
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: "non-string", Type: reflect.TypeFor[Date]()}
	}
	p, err := ParseDate(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "string " + strconv.Quote(truncated(s)), Type: reflect.TypeFor[Date]()}
	}
	*d = p
	return nil
}

func truncated(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// TimePtr is the date as a time, nil for the zero date: the value of a
// nullable date column.
func (d Date) TimePtr() *time.Time {
	if d.IsZero() {
		return nil
	}
	t := d.Time()
	return &t
}
