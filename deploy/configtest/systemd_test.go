package configtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// unit is a systemd unit file: its sections, each a list of key=value
// settings in file order (keys may repeat).
type unit map[string][][2]string

func (u unit) values(section, key string) []string {
	var out []string
	for _, kv := range u[section] {
		if kv[0] == key {
			out = append(out, kv[1])
		}
	}
	return out
}

func (u unit) value(section, key string) string {
	v := u.values(section, key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

var (
	sectionRE = regexp.MustCompile(`^\[([A-Za-z]+)\]$`)
	settingRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]*)=(.*)$`)
)

// parseUnit reads a unit file strictly: comments, blank lines, [Section]
// headers and Key=Value lines, nothing else, no line continuations.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(readFile(t, path)), "\n") {
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case sectionRE.MatchString(line):
			section = sectionRE.FindStringSubmatch(line)[1]
			if _, dup := u[section]; dup {
				t.Errorf("%s:%d: section [%s] twice", path, i+1, section)
			}
			u[section] = nil
		case settingRE.MatchString(line) && section != "" && !strings.HasSuffix(line, `\`):
			m := settingRE.FindStringSubmatch(line)
			u[section] = append(u[section], [2]string{m[1], m[2]})
		default:
			t.Errorf("%s:%d: not a section header or Key=Value: %q", path, i+1, line)
		}
	}
	for _, s := range []string{"Unit", "Service", "Install"} {
		if _, ok := u[s]; !ok {
			t.Errorf("%s: no [%s] section", path, s)
		}
	}
	return u
}

func TestSystemdUnits(t *testing.T) {
	hardening := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
		"Restart": "on-failure",
	}
	for _, target := range []string{"api", "projector"} {
		path := deployPath("systemd", "gcmtrack-"+target+".service")
		u := parseUnit(t, path)
		if got, want := u.value("Service", "ExecStart"), "/usr/local/bin/gcmtrack run --target="+target; got != want {
			t.Errorf("%s: ExecStart=%s, want %s", path, got, want)
		}
		env := u.values("Service", "EnvironmentFile")
		if len(env) == 0 || env[0] != "/etc/gcmtrack/gcmtrack.env" {
			t.Errorf("%s: EnvironmentFile=%v, want /etc/gcmtrack/gcmtrack.env first", path, env)
		}
		if len(env) != 2 || env[1] != "/etc/gcmtrack/"+target+".env" {
			t.Errorf("%s: EnvironmentFile=%v, want /etc/gcmtrack/%s.env for the process's own credentials", path, env, target)
		}
		for k, v := range hardening {
			if got := u.value("Service", k); got != v {
				t.Errorf("%s: %s=%q, want %s", path, k, got, v)
			}
		}
		if u.value("Service", "DynamicUser") != "yes" && u.value("Service", "User") == "" {
			t.Errorf("%s: runs as root: set DynamicUser= or User=", path)
		}
		if u.value("Install", "WantedBy") != "multi-user.target" {
			t.Errorf("%s: not wanted by multi-user.target", path)
		}
		// The example environment files the unit reads exist.
		for _, e := range env {
			example := deployPath("systemd", strings.TrimSuffix(filepath.Base(e), ".env")+".env.example")
			readFile(t, example)
		}
	}

	path := deployPath("systemd", "nats.service")
	u := parseUnit(t, path)
	exec := u.value("Service", "ExecStart")
	if !strings.Contains(exec, "nats-server") || !strings.Contains(exec, "--config /etc/nats/nats.conf") {
		t.Errorf("%s: ExecStart=%s", path, exec)
	}
	if u.value("Service", "User") == "" || u.value("Service", "KillSignal") != "SIGUSR2" {
		t.Errorf("%s: want a nats user and lame-duck stop (KillSignal=SIGUSR2)", path)
	}
	if u.value("Service", "NoNewPrivileges") != "yes" || u.value("Service", "ProtectSystem") != "strict" {
		t.Errorf("%s: not hardened", path)
	}
	rw := u.value("Service", "ReadWritePaths") + " " + u.value("Service", "StateDirectory")
	if !strings.Contains(rw, "nats") {
		t.Errorf("%s: the JetStream store under /var/lib/nats is not writable", path)
	}
}

// TestSystemdEnvExamples checks that the examples set what gcmtrack reads,
// with the right NATS user and role per process.
func TestSystemdEnvExamples(t *testing.T) {
	parse := func(name string) map[string]string {
		vars := map[string]string{}
		path := deployPath("systemd", name)
		for i, line := range strings.Split(string(readFile(t, path)), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || !strings.HasPrefix(k, "GCM_") {
				t.Errorf("%s:%d: not a GCM_ setting: %q", path, i+1, line)
			}
			vars[k] = v
		}
		return vars
	}
	shared := parse("gcmtrack.env.example")
	if shared["GCM_STREAM_REPLICAS"] != "3" {
		t.Errorf("gcmtrack.env.example: GCM_STREAM_REPLICAS=%q, want 3", shared["GCM_STREAM_REPLICAS"])
	}
	addrs := map[string]bool{}
	for _, target := range []string{"api", "projector"} {
		vars := parse(target + ".env.example")
		if strings.Count(vars["GCM_NATS_URL"], "nats://"+target+":") != 3 {
			t.Errorf("%s.env.example: GCM_NATS_URL should list three nodes as user %s", target, target)
		}
		if !strings.HasPrefix(vars["GCM_DATABASE_URL"], "postgres://gcm_"+target+":") {
			t.Errorf("%s.env.example: GCM_DATABASE_URL should use role gcm_%s", target, target)
		}
		if vars["GCM_HTTP_ADDR"] == "" || addrs[vars["GCM_HTTP_ADDR"]] {
			t.Errorf("%s.env.example: GCM_HTTP_ADDR %q missing or shared with the other process", target, vars["GCM_HTTP_ADDR"])
		}
		addrs[vars["GCM_HTTP_ADDR"]] = true
	}
}

// TestSystemdAnalyzeVerify has systemd check the units where the machine
// has systemd-analyze: it knows every directive and value. The programs the
// units start are replaced by /bin/true, since they are not installed here.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	for _, path := range glob(t, "systemd/*.service", 3) {
		text := string(readFile(t, path))
		for _, prog := range []string{"/usr/local/bin/gcmtrack", "/usr/local/bin/nats-server"} {
			text = strings.ReplaceAll(text, prog, "/bin/true")
		}
		unitPath := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(unitPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		out, err := exec.CommandContext(ctx, analyze, "verify", unitPath).CombinedOutput()
		cancel()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(path), err, out)
		}
	}
}
