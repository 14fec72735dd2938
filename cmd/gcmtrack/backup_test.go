package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestBackupOfARunningSystemRestoresIntoAFreshOne runs the commands as an
// operator would on the embedded default: a backup beside a running
// `gcmtrack run` (attached to its NATS server), a restore into a new data
// directory, and the restored system serving the same answers.
func TestBackupOfARunningSystemRestoresIntoAFreshOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and the binary")
	}
	bin := buildBinary(t)
	env := []string{"GCM_BOOTSTRAP_ADMIN_TOKEN=gcm_backup_test_admin_token", "GCM_LOG_LEVEL=warn", "GCM_DEMO=true"}
	srcDir := dataDir(t)
	a := start(t, bin, srcDir, freeAddr(t), env...)
	file := filepath.Join(t.TempDir(), "gcm.jsonl.gz")
	out := runCLI(t, bin, nil, "backup", "--data-dir", srcDir, file)
	var count, first, last uint64
	if _, err := fmt.Sscanf(out, "backed up %d events (positions %d to %d)", &count, &first, &last); err != nil || count < 100 || first != 1 || last != count {
		t.Fatalf("backup printed %q (%v)", out, err)
	}
	// What the system answered once its read models had caught up with
	// the backup (the demonstration data is all written at start).
	paths := []string{"/v1/iscms", "/v1/states/MEX", "/v1/reports/figures?cycle=2018", "/v1/progress/objectives", "/v1/iscms/puebla-process"}
	withMin := func(p string) string {
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		return fmt.Sprintf("%s%smin_position=%d", p, sep, last)
	}
	want := map[string]any{}
	for _, p := range paths {
		var v any
		if st := getJSON(t, "http://"+a.addr+withMin(p), &v); st != 200 {
			t.Fatalf("GET %s: %d", p, st)
		}
		want[p] = v
	}
	a.stop(t)
	if out := runCLI(t, bin, nil, "restore", "--verify-only", file); out != "" {
		t.Fatalf("restore --verify-only printed %q on stdout", out)
	}

	dstDir := dataDir(t)
	out = runCLI(t, bin, nil, "restore", "--data-dir", dstDir, file)
	if !strings.Contains(out, "restored ") || !strings.Contains(out, "rebuilt registry, records") {
		t.Fatalf("restore printed %q", out)
	}
	b := start(t, bin, dstDir, freeAddr(t), env...)
	for _, p := range paths {
		var got any
		if st := getJSON(t, "http://"+b.addr+withMin(p), &got); st != 200 {
			t.Fatalf("GET %s after the restore: %d", p, st)
		}
		if !reflect.DeepEqual(got, want[p]) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want[p])
			t.Errorf("GET %s differs after the restore:\n got %.600s\nwant %.600s", p, g, w)
		}
	}
	// A restore into a system with events is refused, running or not.
	cmd := exec.Command(bin, "restore", "--data-dir", dstDir, file)
	cmd.Env = os.Environ()
	if msg, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(msg), "not empty") {
		t.Fatalf("restore over a running system's events: %v\n%s", err, msg)
	}
	if out := runCLI(t, bin, nil, "deadletters", "list", "--data-dir", dstDir); !strings.HasPrefix(out, "POSITION") {
		t.Fatalf("deadletters list printed %q", out)
	}
	b.stop(t)
}
