package configtest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// composeServices decodes docker-compose.yml (merge keys resolved) and
// returns its services by name.
func composeServices(t *testing.T) map[string]map[string]any {
	t.Helper()
	doc := yamlDocs(t, deployPath("compose", "docker-compose.yml"))[0]
	services := map[string]map[string]any{}
	for name, svc := range digMap(doc, "services") {
		m, ok := svc.(map[string]any)
		if !ok {
			t.Fatalf("docker-compose.yml: service %s is not a mapping", name)
		}
		services[name] = m
	}
	return services
}

// commandOf returns a service's command as one string.
func commandOf(svc map[string]any) string {
	var parts []string
	for _, p := range digList(svc, "command") {
		parts = append(parts, fmt.Sprint(p))
	}
	return strings.Join(parts, " ")
}

func TestCompose(t *testing.T) {
	services := composeServices(t)
	byPrefix := func(prefix string) []string {
		var names []string
		for name := range services {
			if regexp.MustCompile(`^` + prefix + `-[0-9]+$`).MatchString(name) {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return names
	}
	nats, api, projectors := byPrefix("nats"), byPrefix("api"), byPrefix("projector")
	if len(nats) != 3 || len(api) != 3 || len(projectors) != 2 {
		t.Fatalf("services: nats %v, api %v, projector %v; want 3, 3, 2", nats, api, projectors)
	}
	for _, name := range []string{"postgres", "migrate", "prometheus", "grafana"} {
		if services[name] == nil {
			t.Errorf("no service %s", name)
		}
	}

	for _, name := range nats {
		svc := services[name]
		if img := digString(svc, "image"); !strings.HasPrefix(img, "nats:2.12") {
			t.Errorf("%s: image %q, want nats:2.12", name, img)
		}
		if cmd := commandOf(svc); cmd != "--config /etc/nats/"+name+".conf" {
			t.Errorf("%s: command %q does not load its own configuration", name, cmd)
		}
		if !slices.Contains(digList(svc, "volumes"), any("../nats:/etc/nats:ro")) {
			t.Errorf("%s: deploy/nats is not mounted at /etc/nats", name)
		}
		env := digMap(svc, "environment")
		for _, v := range natsUsers {
			if env[v] == nil {
				t.Errorf("%s: environment lacks %s, which the NATS configuration reads", name, v)
			}
		}
	}
	if img := digString(services["postgres"], "image"); img != "postgres:16" && img != "postgres:15" {
		t.Errorf("postgres: image %q", img)
	}
	if cmd := commandOf(services["migrate"]); cmd != "migrate" {
		t.Errorf("migrate: command %q, want migrate", cmd)
	}
	if !strings.Contains(digString(services["migrate"], "environment", "GCM_DATABASE_URL"), "gcm_owner:") {
		t.Errorf("migrate does not connect as gcm_owner")
	}
	for target, names := range map[string][]string{"api": api, "projector": projectors} {
		for _, name := range names {
			svc := services[name]
			if cmd := commandOf(svc); cmd != "run --target="+target {
				t.Errorf("%s: command %q, want run --target=%s", name, cmd, target)
			}
			env := digMap(svc, "environment")
			natsURL, dbURL := fmt.Sprint(env["GCM_NATS_URL"]), fmt.Sprint(env["GCM_DATABASE_URL"])
			if strings.Count(natsURL, "nats://"+target+":") != 3 {
				t.Errorf("%s: GCM_NATS_URL should list the three nodes with user %s: %s", name, target, natsURL)
			}
			if !strings.Contains(dbURL, "gcm_"+target+":") {
				t.Errorf("%s: GCM_DATABASE_URL should use role gcm_%s: %s", name, target, dbURL)
			}
			if digString(svc, "depends_on", "migrate", "condition") != "service_completed_successfully" {
				t.Errorf("%s: does not wait for migrate", name)
			}
		}
	}

	// Every file mounted from the repository exists.
	for name, svc := range services {
		for _, v := range digList(svc, "volumes") {
			src, _, _ := strings.Cut(fmt.Sprint(v), ":")
			if !strings.HasPrefix(src, ".") {
				continue // a named volume
			}
			if _, err := os.Stat(filepath.Join(deployDir, "compose", src)); err != nil {
				t.Errorf("%s: mounts %s: %v", name, src, err)
			}
		}
	}
	// Every ${VAR} the file uses is documented in .env.example.
	example := string(readFile(t, deployPath("compose", ".env.example")))
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)`).FindAllStringSubmatch(string(readFile(t, deployPath("compose", "docker-compose.yml"))), -1) {
		if !strings.Contains(example, "\n"+m[1]+"=") {
			t.Errorf(".env.example lacks %s", m[1])
		}
	}
}

func TestDockerfile(t *testing.T) {
	path := deployPath("compose", "Dockerfile")
	var froms []string
	var user string
	var build bool
	// Instructions, with continuation lines joined.
	text := strings.ReplaceAll(string(readFile(t, path)), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			user = "" // USER is per stage
		case "USER":
			user = f[1]
		case "RUN":
			if strings.Contains(line, "go build") && strings.Contains(line, "./cmd/gcmtrack") {
				build = true
			}
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.27") {
		t.Errorf("%s: stages %v, want a golang:1.27 build stage and a runtime stage", path, froms)
	}
	if !build {
		t.Errorf("%s: does not build ./cmd/gcmtrack", path)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("%s: runtime stage runs as %q, want a non-root user", path, user)
	}
}
