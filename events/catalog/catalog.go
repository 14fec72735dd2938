// Package catalog is the reference data GCM Tracker is built on, embedded in
// the binary: the Global Compact's 23 objectives, 10 guiding principles and 6
// themes, the 30 inter-State consultation mechanisms active in 2018 with their
// slugs, kinds and regions, partner categories, the 2019 review's
// recommendations (a)-(j), ISO 3166-1 alpha-3 codes, and demonstration member
// lists. Sources: IOM's 2019 review of ISCMs and the Global Compact, public
// ISCM pages, Debian's iso-codes.
package catalog

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

//go:embed data/gcm-catalog.json
var catalogJSON []byte

//go:embed data/iso3166-alpha3.json
var isoJSON []byte

//go:embed data/iscm-members.json
var membersJSON []byte

// Theme is one of the six thematic sessions of the Global Compact's
// consultation phase (T1-T6).
type Theme struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// Principle is one of the ten guiding principles (1-10).
type Principle struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// Objective is one of the 23 objectives (1-23).
type Objective struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// ISCM is one inter-State consultation mechanism as the catalog lists it.
type ISCM struct {
	Slug      string `json:"slug"`
	Kind      string `json:"kind"`
	Region    string `json:"region"`
	Name      string `json:"name"`
	ShortName string `json:"short_name"`
}

// Recommendation is one of the 2019 review's recommendations (a)-(j).
type Recommendation struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// Country is one ISO 3166-1 alpha-3 code with its English short name.
type Country struct {
	Alpha3 string `json:"alpha3"`
	Name   string `json:"name"`
}

// Members is a demonstration member list of one ISCM from a public page.
type Members struct {
	Members   []string `json:"members"`
	Observers []string `json:"observers"`
	Source    string   `json:"source"`
	AsOf      *int     `json:"as_of"`
	Partial   bool     `json:"partial"`
	Note      string   `json:"note"`
}

// Catalog is the whole reference set. It is immutable once loaded.
type Catalog struct {
	Version           string             `json:"catalog_version"`
	Source            string             `json:"source"`
	Themes            []Theme            `json:"themes"`
	Principles        []Principle        `json:"guiding_principles"`
	Objectives        []Objective        `json:"objectives"`
	Kinds             map[string]string  `json:"iscm_kinds"`
	ISCMs             []ISCM             `json:"iscms"`
	PartnerCategories []string           `json:"partner_categories"`
	Recommendations   []Recommendation   `json:"recommendations"`
	ReviewCycles      map[string]string  `json:"review_cycles"`
	Countries         []Country          `json:"-"`
	DemoMembers       map[string]Members `json:"-"`
	DemoMembersAbout  string             `json:"-"`
	iscmBySlug        map[string]int     // index into ISCMs
	countryByCode     map[string]int     // index into Countries
	themeIDs          map[string]bool
}

// Default returns the embedded catalog, parsed once.
func Default() *Catalog { return loadDefault() }

var loadDefault = sync.OnceValue(func() *Catalog {
	c, err := Parse(catalogJSON, isoJSON, membersJSON)
	if err != nil {
		// The data is compiled in and checked by the package's tests.
		panic(fmt.Sprintf("catalog: embedded data: %v", err))
	}
	return c
})

// Parse reads the catalog from its three source documents.
func Parse(catalogDoc, isoDoc, membersDoc []byte) (*Catalog, error) {
	var raw struct {
		Version    string            `json:"catalog_version"`
		Source     string            `json:"source"`
		Themes     []Theme           `json:"themes"`
		Principles []Principle       `json:"guiding_principles"`
		Objectives []Objective       `json:"objectives"`
		Kinds      map[string]string `json:"iscm_kinds"`
		ISCMs      []struct {
			Slug, Kind, Region, Name, Short string
		} `json:"iscms_active_2018"`
		PartnerCategories []string          `json:"partner_categories"`
		Recommendations   []Recommendation  `json:"recommendations_2019"`
		ReviewCycle       map[string]string `json:"review_cycle"`
	}
	if err := json.Unmarshal(catalogDoc, &raw); err != nil {
		return nil, fmt.Errorf("parse catalog: %w", err)
	}
	c := &Catalog{
		Version: raw.Version, Source: raw.Source, Themes: raw.Themes, Principles: raw.Principles,
		Objectives: raw.Objectives, Kinds: raw.Kinds, PartnerCategories: raw.PartnerCategories,
		Recommendations: raw.Recommendations, ReviewCycles: raw.ReviewCycle,
		iscmBySlug: map[string]int{}, countryByCode: map[string]int{}, themeIDs: map[string]bool{},
	}
	for _, i := range raw.ISCMs {
		if _, dup := c.iscmBySlug[i.Slug]; dup {
			return nil, fmt.Errorf("parse catalog: duplicate ISCM slug %q", i.Slug)
		}
		if _, ok := raw.Kinds[i.Kind]; !ok {
			return nil, fmt.Errorf("parse catalog: ISCM %q: unknown kind %q", i.Slug, i.Kind)
		}
		c.iscmBySlug[i.Slug] = len(c.ISCMs)
		c.ISCMs = append(c.ISCMs, ISCM{Slug: i.Slug, Kind: i.Kind, Region: i.Region, Name: i.Name, ShortName: i.Short})
	}
	for _, t := range c.Themes {
		c.themeIDs[t.ID] = true
	}
	var iso struct {
		Countries []Country `json:"countries"`
	}
	if err := json.Unmarshal(isoDoc, &iso); err != nil {
		return nil, fmt.Errorf("parse country codes: %w", err)
	}
	c.Countries = iso.Countries
	sort.Slice(c.Countries, func(a, b int) bool { return c.Countries[a].Alpha3 < c.Countries[b].Alpha3 })
	for i, k := range c.Countries {
		c.countryByCode[k.Alpha3] = i
	}
	var mem struct {
		About string             `json:"_about"`
		ISCMs map[string]Members `json:"iscms"`
	}
	if err := json.Unmarshal(membersDoc, &mem); err != nil {
		return nil, fmt.Errorf("parse member lists: %w", err)
	}
	for slug, m := range mem.ISCMs {
		if _, ok := c.iscmBySlug[slug]; !ok {
			return nil, fmt.Errorf("parse member lists: unknown ISCM %q", slug)
		}
		for _, code := range append(append([]string{}, m.Members...), m.Observers...) {
			if _, ok := c.countryByCode[code]; !ok {
				return nil, fmt.Errorf("parse member lists: %s: unknown country code %q", slug, code)
			}
		}
	}
	c.DemoMembers, c.DemoMembersAbout = mem.ISCMs, mem.About
	return c, nil
}

// ISCM returns the catalog entry of a slug.
func (c *Catalog) ISCM(slug string) (ISCM, bool) {
	i, ok := c.iscmBySlug[slug]
	if !ok {
		return ISCM{}, false
	}
	return c.ISCMs[i], true
}

// Country returns the ISO 3166-1 entry of an alpha-3 code.
func (c *Catalog) Country(alpha3 string) (Country, bool) {
	i, ok := c.countryByCode[alpha3]
	if !ok {
		return Country{}, false
	}
	return c.Countries[i], true
}

// ValidObjective reports whether n is one of the 23 objectives.
func (c *Catalog) ValidObjective(n int) bool { return n >= 1 && n <= len(c.Objectives) }

// ValidPrinciple reports whether n is one of the 10 guiding principles.
func (c *Catalog) ValidPrinciple(n int) bool { return n >= 1 && n <= len(c.Principles) }

// ValidTheme reports whether id is one of T1-T6.
func (c *Catalog) ValidTheme(id string) bool { return c.themeIDs[id] }
