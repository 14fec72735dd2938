package web

import (
	"io/fs"
	"regexp"
	"testing"
)

// Every key the templates and the form specs use is in the catalog, so a
// page never shows a raw key.
func TestMessageCatalogIsComplete(t *testing.T) {
	en := messages["en"]
	var missing []string
	need := func(k string) {
		if _, ok := en[k]; !ok {
			missing = append(missing, k)
		}
	}
	for _, rt := range recordTypes {
		need("kind." + rt.kind)
		for _, f := range rt.fields {
			need("field." + f.Name)
		}
	}
	for _, step := range questionnaireSteps {
		for _, f := range step {
			need("field." + f.Name)
		}
	}
	keyRE := regexp.MustCompile(`\{\{\s*t "([a-z0-9_.]+)"`)
	err := fs.WalkDir(templateFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := templateFS.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range keyRE.FindAllStringSubmatch(string(b), -1) {
			need(m[1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("keys missing from the English catalog: %v", missing)
	}
}
