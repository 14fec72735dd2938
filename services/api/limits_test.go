package api

import (
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestCheckShape(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	arr := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]" }
	cases := []struct {
		name, body string
		refused    string // the problem type's short name, "" when accepted
	}{
		{"flat object", `{"a":1,"b":[1,2,3],"c":{"d":"e"}}`, ""},
		{"32 levels", nest(maxDepth), ""},
		{"33 levels", nest(maxDepth + 1), "too-deep"},
		{"33 levels of objects", strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1), "too-deep"},
		{"deep and unterminated", strings.Repeat("[", 100000), "too-deep"},
		{"1000 elements", arr(maxArray), ""},
		{"1001 elements", arr(maxArray + 1), "too-many-elements"},
		{"1001 objects", "[" + strings.TrimSuffix(strings.Repeat("{},", maxArray+1), ",") + "]", "too-many-elements"},
		{"1001 elements nested", `{"x":{"y":` + arr(maxArray+1) + `}}`, "too-many-elements"},
		{"elements counted per array", "[" + arr(maxArray) + "," + arr(maxArray) + "]", ""},
		{"many object keys are not elements", "{" + strings.TrimSuffix(strings.Repeat(`"k":1,`, 5000), ",") + "}", ""},
		{"NUL in a value", `{"a":"x\u0000"}`, "nul-character"},
		{"NUL in a key", `{"\u0000":1}`, "nul-character"},
		{"other escapes", `{"a":"\u0001\n\t"}`, ""},
		{"malformed is left to the decoder", `{"a":[1,2`, ""},
		{"empty", ``, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkShape([]byte(c.body))
			switch {
			case c.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.refused != "" && err == nil:
				t.Fatal("accepted")
			case c.refused != "":
				p := errProblem(err)
				if p.Status != http.StatusBadRequest || p.Type != problemTypeBase+c.refused {
					t.Fatalf("answered %d %s, want 400 %s", p.Status, p.Type, c.refused)
				}
			}
		})
	}
}

func TestLimiterRefusesPastTheBurstAndSaysWhen(t *testing.T) {
	l := newLimiter(RateLimits{TokenWrites: Rate{PerSecond: 2, Burst: 3}})
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if v := l.allow(classTokenWrite, "t1"); !v.ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	v := l.allow(classTokenWrite, "t1")
	if v.ok || v.retryAfter != time.Second || !v.audit {
		t.Fatalf("past the burst: %+v, want refused, retry after 1 s, audited", v)
	}
	if v := l.allow(classTokenWrite, "t1"); v.ok || v.audit {
		t.Fatalf("second refusal within a second: %+v, want refused and not audited again", v)
	}
	if v := l.allow(classTokenWrite, "t2"); !v.ok {
		t.Fatal("another token shares the first one's bucket")
	}
	if v := l.allow(classTokenRead, "t1"); !v.ok {
		t.Fatal("reads are limited though their rate is unlimited")
	}
	now = now.Add(500 * time.Millisecond)
	if v := l.allow(classTokenWrite, "t1"); !v.ok {
		t.Fatal("not refilled at 2/s after 500 ms")
	}
}

func TestRateLimitsValidate(t *testing.T) {
	if err := DefaultRateLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := (RateLimits{}).Validate(); err != nil {
		t.Fatalf("no limits: %v", err)
	}
	for _, bad := range []RateLimits{
		{TokenWrites: Rate{PerSecond: -1, Burst: 1}},
		{TokenReads: Rate{PerSecond: 5, Burst: 0}},
		{Anonymous: Rate{PerSecond: math.Inf(1), Burst: 5}},
		{MaxTracked: -1},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v passes", bad)
		}
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	l := newLimiter(RateLimits{Anonymous: Rate{PerSecond: 10, Burst: 20}, MaxTracked: 100})
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := range 10000 {
		l.allow(classAddress, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
		if n := l.tracked(); n > 100 {
			t.Fatalf("%d callers tracked, want at most 100", n)
		}
	}
	// Idle callers are forgotten once their bucket has refilled (2 s here).
	now = now.Add(3 * time.Second)
	l.allow(classAddress, "192.0.2.1")
	if n := l.tracked(); n != 1 {
		t.Fatalf("%d callers tracked after all others went idle, want 1", n)
	}
}

func TestLimiterBlocksGuessingBeforeLookup(t *testing.T) {
	l := newLimiter(RateLimits{Anonymous: Rate{PerSecond: 1, Burst: 2}})
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	if v := l.blockedAfterFailure("192.0.2.1"); !v.ok {
		t.Fatal("a new address is blocked")
	}
	l.failedAuth("192.0.2.1")
	if v := l.blockedAfterFailure("192.0.2.1"); !v.ok {
		t.Fatal("blocked with a token left in the bucket")
	}
	l.failedAuth("192.0.2.1")
	if v := l.blockedAfterFailure("192.0.2.1"); v.ok {
		t.Fatal("an address that used its bucket on bad tokens is looked up again")
	}
	if v := l.blockedAfterFailure("192.0.2.2"); !v.ok {
		t.Fatal("another address is blocked")
	}
	now = now.Add(time.Second)
	if v := l.blockedAfterFailure("192.0.2.1"); !v.ok {
		t.Fatal("still blocked after the bucket refilled")
	}
}

func TestAddressKeyGroupsIPv6Networks(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7":              "192.0.2.7",
		"::ffff:192.0.2.7":       "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":   "2001:db8:1:2::/64",
		"not an address":         "not an address",
		"2001:db8:1:3:3:4:5:6:7": "2001:db8:1:3:3:4:5:6:7",
	} {
		if got := addressKey(addr); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestClientAddrTrustsOnlyConfiguredProxies(t *testing.T) {
	s := New(Deps{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	cases := []struct {
		peer, xff, want string
	}{
		{"192.0.2.7:4000", "", "192.0.2.7"},
		{"192.0.2.7:4000", "198.51.100.1", "192.0.2.7"}, // not from a proxy: the header is the client's word
		{"10.1.2.3:4000", "198.51.100.1", "198.51.100.1"},
		{"10.1.2.3:4000", "203.0.113.9, 198.51.100.1, 10.9.9.9", "198.51.100.1"}, // the first hop not ours
		{"10.1.2.3:4000", "garbage, 198.51.100.1", "198.51.100.1"},
		{"10.1.2.3:4000", "198.51.100.1, garbage", "10.1.2.3"},
		{"10.1.2.3:4000", "", "10.1.2.3"},
		{"[::ffff:10.1.2.3]:4000", "2001:db8::1", "2001:db8::1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/v1/catalog", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := s.clientAddr(r); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}
