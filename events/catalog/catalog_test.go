package catalog

import "testing"

func TestDefaultCatalog(t *testing.T) {
	c := Default()
	if got := len(c.Objectives); got != 23 {
		t.Errorf("objectives = %d, want 23", got)
	}
	if got := len(c.Principles); got != 10 {
		t.Errorf("principles = %d, want 10", got)
	}
	if got := len(c.Themes); got != 6 {
		t.Errorf("themes = %d, want 6", got)
	}
	if got := len(c.ISCMs); got != 30 {
		t.Errorf("ISCMs = %d, want 30", got)
	}
	kinds := map[string]int{}
	for _, i := range c.ISCMs {
		kinds[i.Kind]++
	}
	// The review's Annex 5: 15 RCPs, 13 IRFs, 2 global processes.
	if kinds["rcp"] != 15 || kinds["irf"] != 13 || kinds["global"] != 2 {
		t.Errorf("kinds = %v, want rcp 15, irf 13, global 2", kinds)
	}
	if got := len(c.PartnerCategories); got != 8 {
		t.Errorf("partner categories = %d, want 8", got)
	}
	if got := len(c.Recommendations); got != 10 || c.Recommendations[0].ID != "a" || c.Recommendations[9].ID != "j" {
		t.Errorf("recommendations = %+v, want a..j", c.Recommendations)
	}
	for i, o := range c.Objectives {
		if o.ID != i+1 {
			t.Fatalf("objective %d has id %d", i+1, o.ID)
		}
	}
	if p, ok := c.ISCM("puebla-process"); !ok || p.Region != "Americas" || p.Kind != "rcp" {
		t.Errorf("puebla-process = %+v, %v", p, ok)
	}
	if _, ok := c.ISCM("nope"); ok {
		t.Error("unknown slug found")
	}
}

func TestValidators(t *testing.T) {
	c := Default()
	for _, tc := range []struct {
		name string
		got  bool
		want bool
	}{
		{"objective 1", c.ValidObjective(1), true},
		{"objective 23", c.ValidObjective(23), true},
		{"objective 24", c.ValidObjective(24), false},
		{"objective 0", c.ValidObjective(0), false},
		{"principle 10", c.ValidPrinciple(10), true},
		{"principle 0", c.ValidPrinciple(0), false},
		{"theme T6", c.ValidTheme("T6"), true},
		{"theme T7", c.ValidTheme("T7"), false},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	for _, code := range []string{"MEX", "FRA", "XKX", "PSE"} {
		if _, ok := c.Country(code); !ok {
			t.Errorf("country %s not found", code)
		}
	}
	for _, code := range []string{"XXX", "mex", "", "EU"} {
		if _, ok := c.Country(code); ok {
			t.Errorf("country %q found", code)
		}
	}
}

func TestDemoMembersReferenceKnownISCMs(t *testing.T) {
	c := Default()
	if len(c.DemoMembers) < 20 {
		t.Fatalf("demo member lists = %d, want the 25+ of the reference", len(c.DemoMembers))
	}
	if m := c.DemoMembers["almaty-process"]; len(m.Members) != 7 || len(m.Observers) != 2 {
		t.Errorf("almaty-process members = %v observers = %v", m.Members, m.Observers)
	}
}

func TestParseRejectsBrokenData(t *testing.T) {
	if _, err := Parse([]byte(`{"iscm_kinds":{"rcp":""},"iscms_active_2018":[{"slug":"a","kind":"zzz"}]}`), isoJSON, []byte(`{"iscms":{}}`)); err == nil {
		t.Error("unknown kind accepted")
	}
	if _, err := Parse(catalogJSON, isoJSON, []byte(`{"iscms":{"nope":{"members":["MEX"]}}}`)); err == nil {
		t.Error("member list of unknown ISCM accepted")
	}
	if _, err := Parse(catalogJSON, isoJSON, []byte(`{"iscms":{"sacm":{"members":["ZZZ"]}}}`)); err == nil {
		t.Error("unknown country code accepted")
	}
}
