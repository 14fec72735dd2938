package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The import direction of the module (DESIGN.md, STYLE.md):
//
//	events (domain, catalog; no I/O) <- projections <- services <- cmd/gcmtrack
//
// deploy/embedded runs infrastructure and imports none of the three; nothing
// but cmd/gcmtrack and services itself imports services.
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "gcmtrack/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Imports    []string
	}
	allowed := map[string][]string{
		"gcmtrack/events":       {"gcmtrack/events"},
		"gcmtrack/projections":  {"gcmtrack/events", "gcmtrack/projections"},
		"gcmtrack/services":     {"gcmtrack/events", "gcmtrack/projections", "gcmtrack/services"},
		"gcmtrack/deploy":       {"gcmtrack/deploy"},
		"gcmtrack/cmd/gcmtrack": {"gcmtrack/"},
		"gcmtrack/bench":        {"gcmtrack/"}, // like main, the benchmark harness wires everything
		"gcmtrack/chaos":        {"gcmtrack/"}, // and so does the chaos test
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		layer := ""
		for l := range allowed {
			if p.ImportPath == l || strings.HasPrefix(p.ImportPath, l+"/") {
				layer = l
			}
		}
		if layer == "" {
			t.Errorf("package %s is outside the known layers; add it to this test's rules", p.ImportPath)
			continue
		}
		checked++
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, "gcmtrack/") {
				continue
			}
			ok := false
			for _, a := range allowed[layer] {
				if imp == a || strings.HasPrefix(imp, strings.TrimSuffix(a, "/")+"/") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s: %s may import only %v", p.ImportPath, imp, layer, allowed[layer])
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked %d packages: go list output not understood", checked)
	}
}
