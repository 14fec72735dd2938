package api

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	projrecords "gcmtrack/projections/records"
	"gcmtrack/services/pagecache"
)

func (s *Server) feedRoutes() {
	s.handle("GET /v1/feeds/published.json", s.jsonFeed)
	s.handle("GET /v1/feeds/published.atom", s.atomFeed)
}

// segmentOf maps a record kind to its URL segment.
func segmentOf(kind string) string {
	for _, rt := range recordTypes {
		if rt.kind == kind {
			return rt.segment
		}
	}
	return kind
}

// baseURL is the scheme and host the client used.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// feedFilter reads the page a feed request asks for (after=cursor,
// iscm=, kind=, limit=).
func feedFilter(r *http.Request) (projrecords.FeedFilter, error) {
	q := r.URL.Query()
	f := projrecords.FeedFilter{ISCM: q.Get("iscm"), Cursor: q.Get("after")}
	if err := checkCursor("after", f.Cursor); err != nil {
		return f, err
	}
	if k := q.Get("kind"); k != "" {
		found := false
		for _, rt := range recordTypes {
			if rt.segment == k || rt.kind == k {
				f.Kind, found = rt.kind, true
			}
		}
		if !found {
			return f, problem(http.StatusBadRequest, "bad-parameter", "kind must be a record type such as activities")
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > projrecords.MaxLimit {
			return f, problem(http.StatusBadRequest, "bad-parameter", "limit must be an integer from 1 to "+strconv.Itoa(projrecords.MaxLimit))
		}
		f.Limit = n
	}
	return f, nil
}

// Feed pages are kept encoded: up to feedPages of them, feedBytes
// together. Consumers poll the few URLs they were last given; a crawl
// through older pages passes through.
const (
	feedPages = 64
	feedBytes = 16 << 20
)

// feedReadTimeout bounds a feed page's read, shared by the requests that
// wait for it.
const feedReadTimeout = 10 * time.Second

// serveFeed answers a feed request. The page and its encoding are kept for
// the request's URL (with the host and scheme its links use) until the read
// models move: a poll between two writes, answered 200 or 304, neither
// reads the feed nor encodes it. Concurrent requests for a page not kept
// read it once.
func (s *Server) serveFeed(w http.ResponseWriter, r *http.Request,
	encode func(r *http.Request, page projrecords.Page[projrecords.FeedItem]) (*pagecache.Page, error)) error {
	f, err := feedFilter(r)
	if err != nil {
		return err
	}
	if err := s.awaitPosition(r, readModels...); err != nil {
		return err
	}
	version, err := s.d.Reports.Version(r.Context())
	if err != nil {
		return err
	}
	// The version is read before the page: a page kept under a version
	// may be ahead of it, never behind.
	key := baseURL(r) + r.URL.RequestURI() + " @" + version
	a, ok := s.feeds.Get(key)
	if !ok {
		v, err, _ := s.feedReads.Do(key, func() (any, error) {
			// Shared: one caller going away does not fail the others.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), feedReadTimeout)
			defer cancel()
			page, err := s.d.RecordsQ.Feed(ctx, f)
			if errors.Is(err, projrecords.ErrBadCursor) {
				return nil, problem(http.StatusBadRequest, "bad-parameter", "after is not a cursor this server handed out")
			}
			if err != nil {
				return nil, err
			}
			a, err := encode(r, page)
			if err != nil {
				return nil, err
			}
			a.ETag = feedETag(page, f)
			s.feeds.Add(key, a)
			return a, nil
		})
		if err != nil {
			return err
		}
		a = v.(*pagecache.Page)
	}
	if notModified(w, r, a.ETag) {
		return nil
	}
	w.Header().Set("Content-Type", a.ContentType)
	_, err = w.Write(a.Body)
	return err
}

// nextURL is the URL of the page after this one; a consumer polls it.
func nextURL(r *http.Request, cursor string) string {
	q := r.URL.Query()
	q.Set("after", cursor)
	return baseURL(r) + r.URL.Path + "?" + q.Encode()
}

// feedETag identifies a page by its cursor and last item, so a repeated
// poll that finds nothing new answers 304.
func feedETag(page projrecords.Page[projrecords.FeedItem], f projrecords.FeedFilter) string {
	last := "none"
	if n := len(page.Items); n > 0 {
		last = strconv.FormatUint(page.Items[n-1].Position, 10) + "-" + strconv.Itoa(n)
	}
	return `W/"` + strings.NewReplacer(`"`, "").Replace(f.Cursor) + ":" + last + `"`
}

func notModified(w http.ResponseWriter, r *http.Request, tag string) bool {
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == tag {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	return false
}

// jsonFeedItem is one JSON Feed 1.1 item; _gcm carries the record.
type jsonFeedItem struct {
	ID            string   `json:"id"`
	URL           string   `json:"url"`
	Title         string   `json:"title"`
	ContentText   string   `json:"content_text"`
	DatePublished string   `json:"date_published,omitempty"`
	DateModified  string   `json:"date_modified"`
	Tags          []string `json:"tags"`
	GCM           gcmExt   `json:"_gcm"`
}

type gcmExt struct {
	About    string               `json:"about"`
	Change   string               `json:"change"`
	Position uint64               `json:"position"`
	Item     projrecords.FeedItem `json:"item"`
}

type jsonFeedDoc struct {
	Version     string         `json:"version"`
	Title       string         `json:"title"`
	HomePageURL string         `json:"home_page_url"`
	FeedURL     string         `json:"feed_url"`
	NextURL     string         `json:"next_url"`
	Description string         `json:"description"`
	Items       []jsonFeedItem `json:"items"`
}

func itemID(it projrecords.FeedItem) string {
	return "gcmtrack:" + it.ISCM + "/" + it.Kind + "/" + it.ID
}

func itemTitle(it projrecords.FeedItem) string {
	t := strings.ReplaceAll(it.Kind, "_", " ")
	if it.Title != "" {
		t += ": " + it.Title
	}
	t = it.ISCM + " — " + t
	if it.Change == "withdrawn" {
		t = "Withdrawn: " + t
	}
	return t
}

func itemText(it projrecords.FeedItem) string {
	src := "recorded by the secretariat"
	if it.Source.Type == "questionnaire" {
		src = fmt.Sprintf("from the %d %s", deref(it.Source.Cycle), it.Source.Channel)
	}
	return fmt.Sprintf("%s %s of %s (%s), %s at position %d.", strings.ToUpper(it.Change[:1])+it.Change[1:],
		strings.ReplaceAll(it.Kind, "_", " "), it.ISCM, src, it.ChangedAt.UTC().Format(time.DateOnly), it.Position)
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func itemTags(it projrecords.FeedItem) []string {
	tags := []string{it.Kind, it.ISCM, it.Change}
	for _, o := range it.Objectives {
		tags = append(tags, "objective-"+strconv.Itoa(o))
	}
	return tags
}

func (s *Server) jsonFeed(w http.ResponseWriter, r *http.Request) error {
	return s.serveFeed(w, r, encodeJSONFeed)
}

func encodeJSONFeed(r *http.Request, page projrecords.Page[projrecords.FeedItem]) (*pagecache.Page, error) {
	base := baseURL(r)
	doc := jsonFeedDoc{
		Version: "https://jsonfeed.org/version/1.1", Title: "GCM Tracker — published records",
		HomePageURL: base + "/", FeedURL: base + r.URL.RequestURI(), NextURL: nextURL(r, page.NextCursor),
		Description: "Records of inter-State consultation mechanisms on migration approved for publication by IOM, oldest change first. Follow next_url to poll; a record appears again when it is corrected or withdrawn.",
		Items:       []jsonFeedItem{},
	}
	for _, it := range page.Items {
		ji := jsonFeedItem{ID: itemID(it), URL: base + "/v1/iscms/" + url.PathEscape(it.ISCM) + "/" + segmentOf(it.Kind) + "/" + url.PathEscape(it.ID),
			Title: itemTitle(it), ContentText: itemText(it), DateModified: it.ChangedAt.UTC().Format(time.RFC3339), Tags: itemTags(it),
			GCM: gcmExt{About: "https://gcmtrack.example/feed-extension", Change: it.Change, Position: it.Position, Item: it}}
		if it.PublishedAt != nil {
			ji.DatePublished = it.PublishedAt.UTC().Format(time.RFC3339)
		}
		doc.Items = append(doc.Items, ji)
	}
	body, err := marshalLine(doc)
	return &pagecache.Page{ContentType: "application/feed+json", Body: body}, err
}

type atomLink struct {
	Rel  string `xml:"rel,attr,omitempty"`
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

type atomCategory struct {
	Term string `xml:"term,attr"`
}

type atomEntry struct {
	ID         string         `xml:"id"`
	Title      string         `xml:"title"`
	Updated    string         `xml:"updated"`
	Published  string         `xml:"published,omitempty"`
	Links      []atomLink     `xml:"link"`
	Categories []atomCategory `xml:"category"`
	Summary    atomText       `xml:"summary"`
	Content    atomText       `xml:"content"`
}

type atomFeedDoc struct {
	XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string   `xml:"id"`
	Title   string   `xml:"title"`
	Updated string   `xml:"updated"`
	Author  struct {
		Name string `xml:"name"`
	} `xml:"author"`
	Links   []atomLink  `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

func (s *Server) atomFeed(w http.ResponseWriter, r *http.Request) error {
	return s.serveFeed(w, r, encodeAtomFeed)
}

func encodeAtomFeed(r *http.Request, page projrecords.Page[projrecords.FeedItem]) (*pagecache.Page, error) {
	base := baseURL(r)
	doc := atomFeedDoc{ID: "urn:gcmtrack:feed:published", Title: "GCM Tracker — published records",
		Links: []atomLink{{Rel: "self", Href: base + r.URL.RequestURI()}, {Rel: "next", Href: nextURL(r, page.NextCursor)}}}
	doc.Author.Name = "GCM Tracker"
	updated := time.Unix(0, 0).UTC()
	for _, it := range page.Items {
		if it.ChangedAt.After(updated) {
			updated = it.ChangedAt.UTC()
		}
		cats := []atomCategory{}
		for _, t := range itemTags(it) {
			cats = append(cats, atomCategory{Term: t})
		}
		e := atomEntry{ID: "urn:gcmtrack:" + it.ISCM + ":" + it.Kind + ":" + it.ID, Title: itemTitle(it),
			Updated:    it.ChangedAt.UTC().Format(time.RFC3339),
			Links:      []atomLink{{Rel: "alternate", Type: "application/json", Href: base + "/v1/iscms/" + url.PathEscape(it.ISCM) + "/" + segmentOf(it.Kind) + "/" + url.PathEscape(it.ID)}},
			Categories: cats, Summary: atomText{Type: "text", Body: itemText(it)}, Content: atomText{Type: "text", Body: string(it.Record)}}
		if it.PublishedAt != nil {
			e.Published = it.PublishedAt.UTC().Format(time.RFC3339)
		}
		doc.Entries = append(doc.Entries, e)
	}
	doc.Updated = updated.Format(time.RFC3339)
	body, err := xml.MarshalIndent(doc, "", " ")
	if err != nil {
		return nil, err
	}
	return &pagecache.Page{ContentType: "application/atom+xml; charset=utf-8", Body: append([]byte(xml.Header), body...)}, nil
}
