package configtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestDeployment runs the system as deployed: the three NATS nodes from
// deploy/nats, the stream created from stream-GCM.json, PostgreSQL with
// deploy/postgres/roles.sql, `gcmtrack migrate` as gcm_owner, one API and
// one projector process, each with its own NATS user and database role.
func TestDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	start := time.Now()
	bin := buildBinary(t)
	nc := startNATSCluster(t)
	pg := startPostgres(t)
	dbURLs := setUpDatabase(t, pg)
	t.Logf("servers up after %v", time.Since(start).Round(time.Millisecond))

	adminNC, _ := connectNATS(t, nc, "admin")
	adminJS, err := jetstream.New(adminNC)
	if err != nil {
		t.Fatal(err)
	}
	want := streamConfig(t)
	createStream(t, adminJS, want)

	out, err := exec.CommandContext(t.Context(), bin, "migrate", "--database-url", dbURLs["gcm_owner"]).CombinedOutput()
	if err != nil {
		t.Fatalf("gcmtrack migrate as gcm_owner: %v\n%s", err, out)
	}

	const token = "gcm_configtest-bootstrap-admin-token"
	api := startProcess(t, bin, "api", map[string]string{
		"GCM_NATS_URL":              nc.url("api"),
		"GCM_DATABASE_URL":          dbURLs["gcm_api"],
		"GCM_STREAM_REPLICAS":       "3",
		"GCM_BOOTSTRAP_ADMIN_TOKEN": token,
	})
	projector := startProcess(t, bin, "projector", map[string]string{
		"GCM_NATS_URL":     nc.url("projector"),
		"GCM_DATABASE_URL": dbURLs["gcm_projector"],
	})
	api.awaitReady(t)
	projector.awaitReady(t)
	t.Logf("gcmtrack ready after %v", time.Since(start).Round(time.Millisecond))

	// A write through the API, read back once the projector has applied it.
	body := `{"state":"MEX","status":"member","since":"1996-03-13"}`
	resp := api.request(t, "POST", "/v1/iscms/puebla-process/members", body, "Authorization", "Bearer "+token, "Idempotency-Key", "configtest-1", "Content-Type", "application/json")
	if resp.code/100 != 2 {
		t.Fatalf("add member: %d %s", resp.code, resp.body)
	}
	var written struct{ Position uint64 }
	if err := json.Unmarshal([]byte(resp.body), &written); err != nil || written.Position == 0 {
		t.Fatalf("add member answered %s", resp.body)
	}
	resp = api.request(t, "GET", fmt.Sprintf("/v1/states/MEX?min_position=%d", written.Position), "")
	if resp.code != 200 || !strings.Contains(resp.body, "puebla-process") {
		t.Fatalf("read back: %d %s", resp.code, resp.body)
	}
	// The write is in the audit log, which the API writes as gcm_api in the
	// background.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp = api.request(t, "GET", "/v1/audit?route="+url.QueryEscape("POST /v1/iscms/{slug}/members"), "", "Authorization", "Bearer "+token)
		if resp.code == 200 && strings.Contains(resp.body, fmt.Sprintf(`"position":%d`, written.Position)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write is not in the audit log: %d %s", resp.code, resp.body)
		}
	}

	// The API asserts the stream's settings at every start: the file must
	// say the same, or a start would change the production stream.
	s, err := adminJS.Stream(t.Context(), "GCM")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := comparableStreamConfig(info.Config); !reflect.DeepEqual(got, comparableStreamConfig(want)) {
		t.Errorf("the API changed the stream settings of stream-GCM.json:\n got  %+v\n want %+v", got, comparableStreamConfig(want))
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Errorf("stream GCM replicas: %+v", info.Cluster)
	}

	metrics := projector.request(t, "GET", "/metrics", "")
	if !strings.Contains(metrics.body, `gcm_projection_position{generation="1",projection="registry"}`) {
		t.Errorf("projector metrics lack gcm_projection_position of registry")
	}
	metrics = api.request(t, "GET", "/metrics", "")
	if !strings.Contains(metrics.body, "gcm_eventstore_appends_total") {
		t.Errorf("API metrics lack gcm_eventstore_appends_total")
	}

	// The operator commands of deploy/README.md, with the credentials it
	// names: tokens as the API, rebuilds as the projector.
	cmd := exec.CommandContext(t.Context(), bin, "token", "create", "--role", "monitor", "--name", "configtest")
	cmd.Env = append(os.Environ(), "GCM_DATABASE_URL="+dbURLs["gcm_api"])
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "gcm_") {
		t.Errorf("gcmtrack token create as gcm_api: %v\n%s", err, out)
	}
	cmd = exec.CommandContext(t.Context(), bin, "rebuild", "registry")
	cmd.Env = append(os.Environ(), "GCM_NATS_URL="+nc.url("projector"), "GCM_DATABASE_URL="+dbURLs["gcm_projector"], "GCM_DATA_DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("gcmtrack rebuild as projector: %v\n%s", err, out)
	}
	var schema string
	if err := pgConnect(t, dbURLs["gcm_api"]).QueryRow(t.Context(),
		`SELECT schema_name FROM gcm.projection_builds WHERE name = 'registry' AND status = 'active'`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if schema != "p_registry_2" {
		t.Errorf("active registry build after the rebuild: %s, want p_registry_2", schema)
	}
	resp = api.request(t, "GET", "/v1/states/MEX", "")
	if resp.code != 200 || !strings.Contains(resp.body, "puebla-process") {
		t.Errorf("read after the rebuild: %d %s", resp.code, resp.body)
	}

	checkPrivileges(t, dbURLs, schema)
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// comparableStreamConfig keeps the settings the file and the API set.
func comparableStreamConfig(c jetstream.StreamConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: c.Name, Description: c.Description, Subjects: c.Subjects, Retention: c.Retention,
		MaxConsumers: c.MaxConsumers, MaxMsgs: c.MaxMsgs, MaxBytes: c.MaxBytes, Discard: c.Discard,
		MaxAge: c.MaxAge, MaxMsgsPerSubject: c.MaxMsgsPerSubject, MaxMsgSize: c.MaxMsgSize,
		Storage: c.Storage, Replicas: c.Replicas, Duplicates: c.Duplicates, DenyDelete: c.DenyDelete,
		DenyPurge: c.DenyPurge, AllowRollup: c.AllowRollup, Compression: c.Compression,
		AllowDirect: c.AllowDirect, MirrorDirect: c.MirrorDirect, Sealed: c.Sealed,
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gcmtrack")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "gcmtrack/cmd/gcmtrack")
	cmd.Dir = filepath.Join(deployDir, "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a running `gcmtrack run --target=...`.
type process struct {
	target string
	addr   string
	cmd    *exec.Cmd
	log    *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startProcess(t *testing.T, bin, target string, env map[string]string) *process {
	t.Helper()
	p := &process{target: target, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), log: &lockedBuffer{}}
	p.cmd = exec.Command(bin, "run", "--target="+target)
	p.cmd.Env = append(os.Environ(), "GCM_HTTP_ADDR="+p.addr, "GCM_LOG_LEVEL=info", "GCM_DATA_DIR="+t.TempDir())
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("gcmtrack --target=%s output:\n%s", target, p.log)
		}
	})
	return p
}

func (p *process) awaitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if p.cmd.ProcessState != nil {
			break
		}
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("gcmtrack --target=%s not ready:\n%s", p.target, p.log)
}

type response struct {
	code int
	body string
}

func (p *process) request(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+p.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, body: string(b)}
}
