// Package configtest checks the deployment files under deploy/: each is
// parsed with the parser of the program that reads it, and the NATS
// configuration and the PostgreSQL roles are also run for real.
package configtest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deployDir is deploy/, the parent of this package's directory.
const deployDir = ".."

func deployPath(parts ...string) string {
	return filepath.Join(append([]string{deployDir}, parts...)...)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func glob(t *testing.T, pattern string, min int) []string {
	t.Helper()
	files, err := filepath.Glob(deployPath(pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < min {
		t.Fatalf("%s: %d files, want at least %d", pattern, len(files), min)
	}
	return files
}

// yamlDocs decodes every document of a YAML stream into generic values,
// rejecting duplicate keys (the decoder does) and empty streams.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if doc == nil {
			continue // a "---" with nothing after it
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML documents", path)
	}
	return docs
}

// dig walks nested maps and lists: keys for maps, ints for lists. It
// returns nil when a step is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func digString(v any, path ...any) string {
	s, _ := dig(v, path...).(string)
	return s
}

func digList(v any, path ...any) []any {
	l, _ := dig(v, path...).([]any)
	return l
}

func digMap(v any, path ...any) map[string]any {
	m, _ := dig(v, path...).(map[string]any)
	return m
}

// anchorRE matches the runbook links of the alert rules.
var anchorRE = regexp.MustCompile(`deploy/README\.md#([a-z0-9-]+)$`)

// readmeAnchors returns the anchors GitHub makes of deploy/README.md's
// headings: lower case, punctuation dropped, spaces to hyphens.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(readFile(t, deployPath("README.md"))), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}
