// Package pagecache keeps encoded responses (feed pages, rendered pages)
// by key, the most recently used first, within a count and a byte budget.
// Keys name everything a response depends on, the read models' version
// among it: an entry is never stale, only no longer asked for.
package pagecache

import (
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Page is one kept response.
type Page struct {
	ETag        string
	ContentType string
	Body        []byte
}

// Cache keeps pages. It is safe for concurrent use.
type Cache struct {
	lru          *lru.Cache[string, *Page]
	bytes        atomic.Int64 // of the kept bodies
	maxBytes     int64
	hits, misses atomic.Uint64
}

// New returns a cache of at most n pages holding at most maxBytes of
// bodies together. A page larger than maxBytes is not kept.
func New(n int, maxBytes int64) *Cache {
	c := &Cache{maxBytes: maxBytes}
	c.lru, _ = lru.NewWithEvict(max(n, 1), func(_ string, p *Page) { c.bytes.Add(-int64(len(p.Body))) })
	return c
}

// Get returns the page kept under key.
func (c *Cache) Get(key string) (*Page, bool) {
	p, ok := c.lru.Get(key)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return p, ok
}

// Add keeps p under key, unless a page is kept under it already, and
// lets the least recently used go until the bodies fit the budget.
func (c *Cache) Add(key string, p *Page) {
	size := int64(len(p.Body))
	if size > c.maxBytes {
		return
	}
	c.bytes.Add(size)
	if found, _ := c.lru.ContainsOrAdd(key, p); found {
		c.bytes.Add(-size)
		return
	}
	for c.bytes.Load() > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			return
		}
	}
}

// Len is how many pages are kept.
func (c *Cache) Len() int { return c.lru.Len() }

// Bytes is how many bytes of bodies are kept.
func (c *Cache) Bytes() int64 { return c.bytes.Load() }

// Collectors export the cache's lookups (hits and misses), its pages and
// their bytes, labelled cache=name.
func (c *Cache) Collectors(name string) []prometheus.Collector {
	lookups := func(result string, n *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gcm_kept_pages_lookups_total", Help: "Lookups of kept responses (feed pages, public pages), by cache and result (hit, miss).",
			ConstLabels: prometheus.Labels{"cache": name, "result": result},
		}, func() float64 { return float64(n.Load()) })
	}
	return []prometheus.Collector{
		lookups("hit", &c.hits), lookups("miss", &c.misses),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gcm_kept_pages", Help: "Responses kept, by cache.", ConstLabels: prometheus.Labels{"cache": name},
		}, func() float64 { return float64(c.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gcm_kept_pages_bytes", Help: "Bytes of the responses kept, by cache.", ConstLabels: prometheus.Labels{"cache": name},
		}, func() float64 { return float64(c.Bytes()) }),
	}
}
