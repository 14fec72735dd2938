package events

import (
	"fmt"
	"strings"
	"time"
)

// Cycle is a review cycle: a regional review or an IMRF.
type Cycle struct {
	ID   string `json:"id"` // regional-2024, imrf-2026
	Kind string `json:"kind"`
	Year int    `json:"year"`
	From Date   `json:"from"`
	To   Date   `json:"to"`
}

// ParseCycle reads a cycle id: "imrf-<year>" for the International
// Migration Review Forum (every four years from 2022) or "regional-<year>"
// for the regional reviews (every four years from 2020). A cycle covers its
// year and the three before it.
func ParseCycle(id string) (Cycle, error) {
	kind, y, ok := strings.Cut(id, "-")
	var year int
	if _, err := fmt.Sscan(y, &year); !ok || err != nil {
		return Cycle{}, fmt.Errorf("cycle %q: want imrf-<year> or regional-<year>", id)
	}
	first := map[string]int{"imrf": 2022, "regional": 2020}[kind]
	if first == 0 || year < first || year > 2100 || (year-first)%4 != 0 {
		return Cycle{}, fmt.Errorf("cycle %q: the IMRF meets in 2022, 2026, 2030 …; regional reviews are held in 2020, 2024, 2028 …", id)
	}
	from := DateOf(time.Date(year-3, 1, 1, 0, 0, 0, 0, time.UTC))
	to := DateOf(time.Date(year, 12, 31, 0, 0, 0, 0, time.UTC))
	return Cycle{ID: id, Kind: kind, Year: year, From: from, To: to}, nil
}

// In reports whether a date falls in the cycle.
func (c Cycle) In(d Date) bool {
	return !d.IsZero() && !d.Before(c.From) && !c.To.Before(d)
}

// Cycles lists the review cycles up to and including year.
func Cycles(upTo int) []Cycle {
	var out []Cycle
	for y := 2020; y <= upTo; y += 2 {
		id := fmt.Sprintf("regional-%d", y)
		if (y-2022)%4 == 0 {
			id = fmt.Sprintf("imrf-%d", y)
		}
		c, err := ParseCycle(id)
		if err == nil {
			out = append(out, c)
		}
	}
	return out
}
