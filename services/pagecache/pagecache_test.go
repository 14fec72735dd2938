package pagecache

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func page(n int) *Page { return &Page{ETag: fmt.Sprint(n), Body: bytes.Repeat([]byte{'x'}, n)} }

func TestKeepsWithinCountAndBytes(t *testing.T) {
	c := New(3, 100)
	c.Add("a", page(40))
	c.Add("b", page(40))
	if c.Len() != 2 || c.Bytes() != 80 {
		t.Fatalf("two pages: %d kept, %d bytes", c.Len(), c.Bytes())
	}
	c.Get("a") // a is now the most recently used
	c.Add("c", page(30))
	if _, ok := c.Get("b"); ok {
		t.Error("b, the least recently used, is kept past the byte budget")
	}
	if _, ok := c.Get("a"); !ok {
		t.Error("a was let go")
	}
	if c.Len() != 2 || c.Bytes() != 70 {
		t.Errorf("after the budget: %d kept, %d bytes", c.Len(), c.Bytes())
	}
	c.Add("d", page(1))
	c.Add("e", page(1)) // c, used less recently than a, goes
	if _, ok := c.Get("c"); ok || c.Len() != 3 || c.Bytes() != 42 {
		t.Errorf("after the count: c kept %t, %d kept, %d bytes, want 3 and 42", ok, c.Len(), c.Bytes())
	}
	c.Add("big", page(101))
	if _, ok := c.Get("big"); ok || c.Bytes() != 42 {
		t.Errorf("a page over the budget is kept (%t), %d bytes", ok, c.Bytes())
	}
}

func TestAddKeepsTheFirstPageOfAKey(t *testing.T) {
	c := New(4, 100)
	c.Add("k", page(10))
	c.Add("k", page(20))
	p, _ := c.Get("k")
	if p.ETag != "10" || c.Bytes() != 10 || c.Len() != 1 {
		t.Errorf("kept %s, %d bytes, %d pages", p.ETag, c.Bytes(), c.Len())
	}
}

func TestConcurrentUseKeepsTheCount(t *testing.T) {
	c := New(8, 1000)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				key := fmt.Sprint((w*31 + i) % 40)
				if _, ok := c.Get(key); !ok {
					c.Add(key, page(10+i%90))
				}
			}
		})
	}
	wg.Wait()
	var sum int64
	for i := range 40 {
		if p, ok := c.Get(fmt.Sprint(i)); ok {
			sum += int64(len(p.Body))
		}
	}
	if sum != c.Bytes() || c.Bytes() > 1000 || c.Len() > 8 {
		t.Errorf("kept bodies sum to %d, counted %d (budget 1000), %d pages", sum, c.Bytes(), c.Len())
	}
}

func TestCollectorsCountLookupsPagesAndBytes(t *testing.T) {
	c := New(4, 100)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collectors("feed")...)
	reg.MustRegister(New(1, 1).Collectors("public")...) // a second cache beside it
	c.Get("a")
	c.Add("a", page(30))
	c.Get("a")
	c.Get("a")
	want := `
# HELP gcm_kept_pages Responses kept, by cache.
# TYPE gcm_kept_pages gauge
gcm_kept_pages{cache="feed"} 1
gcm_kept_pages{cache="public"} 0
# HELP gcm_kept_pages_bytes Bytes of the responses kept, by cache.
# TYPE gcm_kept_pages_bytes gauge
gcm_kept_pages_bytes{cache="feed"} 30
gcm_kept_pages_bytes{cache="public"} 0
# HELP gcm_kept_pages_lookups_total Lookups of kept responses (feed pages, public pages), by cache and result (hit, miss).
# TYPE gcm_kept_pages_lookups_total counter
gcm_kept_pages_lookups_total{cache="feed",result="hit"} 2
gcm_kept_pages_lookups_total{cache="feed",result="miss"} 1
gcm_kept_pages_lookups_total{cache="public",result="hit"} 0
gcm_kept_pages_lookups_total{cache="public",result="miss"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gcm_kept_pages", "gcm_kept_pages_bytes", "gcm_kept_pages_lookups_total"); err != nil {
		t.Error(err)
	}
}
