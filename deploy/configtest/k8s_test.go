package configtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// k8sObjects decodes every manifest under deploy/k8s except the Helm values
// and kustomizations, keyed by kind/name.
func k8sObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	objects := map[string]map[string]any{}
	var files []string
	err := filepath.WalkDir(deployPath("k8s"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		base := filepath.Base(path)
		if base == "nats-values.yaml" || base == "kustomization.yaml" {
			continue
		}
		for i, doc := range yamlDocs(t, path) {
			kind, name := digString(doc, "kind"), digString(doc, "metadata", "name")
			if digString(doc, "apiVersion") == "" || kind == "" || name == "" {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", path, i+1)
				continue
			}
			if kind != "Namespace" && digString(doc, "metadata", "namespace") == "" {
				t.Errorf("%s: %s/%s has no namespace", path, kind, name)
			}
			key := kind + "/" + name
			if objects[key] != nil && kind != "Secret" {
				t.Errorf("%s: %s defined twice", path, key)
			}
			objects[key] = doc
		}
	}
	return objects
}

func TestKubernetesManifests(t *testing.T) {
	objects := k8sObjects(t)
	for _, want := range []string{"Namespace/gcmtrack", "ConfigMap/gcmtrack", "Deployment/gcmtrack-api", "Deployment/gcmtrack-projector",
		"Service/gcmtrack-api", "Service/gcmtrack-projector", "PodDisruptionBudget/gcmtrack-api", "PodDisruptionBudget/gcmtrack-projector",
		"Job/gcmtrack-migrate", "Secret/gcmtrack-api", "Secret/gcmtrack-projector", "Secret/gcmtrack-migrate", "Secret/nats-users"} {
		if objects[want] == nil {
			t.Errorf("no %s", want)
		}
	}

	for name, want := range map[string]struct {
		replicas int
		target   string
	}{"gcmtrack-api": {3, "api"}, "gcmtrack-projector": {2, "projector"}} {
		d := objects["Deployment/"+name]
		if d == nil {
			continue
		}
		if got, _ := dig(d, "spec", "replicas").(int); got != want.replicas {
			t.Errorf("%s: replicas %v, want %d", name, dig(d, "spec", "replicas"), want.replicas)
		}
		selector := digMap(d, "spec", "selector", "matchLabels")
		labels := digMap(d, "spec", "template", "metadata", "labels")
		for k, v := range selector {
			if labels[k] != v {
				t.Errorf("%s: selector %s=%v does not match the pod labels", name, k, v)
			}
		}
		ctr := dig(d, "spec", "template", "spec", "containers", 0)
		if args := fmt.Sprint(digList(ctr, "args")); args != "[run --target="+want.target+"]" {
			t.Errorf("%s: args %s", name, args)
		}
		if digString(ctr, "readinessProbe", "httpGet", "path") != "/readyz" {
			t.Errorf("%s: no readiness probe on /readyz", name)
		}
		if digString(ctr, "livenessProbe", "httpGet", "path") != "/healthz" {
			t.Errorf("%s: no liveness probe on /healthz", name)
		}
		if dig(ctr, "securityContext", "readOnlyRootFilesystem") != true || dig(ctr, "securityContext", "allowPrivilegeEscalation") != false {
			t.Errorf("%s: container security context not locked down", name)
		}
		if dig(d, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pods may run as root", name)
		}
		secret := "gcmtrack-" + want.target
		if !slices.ContainsFunc(digList(ctr, "envFrom"), func(e any) bool { return digString(e, "secretRef", "name") == secret }) {
			t.Errorf("%s: does not read Secret %s", name, secret)
		}
		pdb := objects["PodDisruptionBudget/"+name]
		if fmt.Sprint(digMap(pdb, "spec", "selector", "matchLabels")) != fmt.Sprint(selector) {
			t.Errorf("%s: PodDisruptionBudget selects other pods than the Deployment", name)
		}
		svc := objects["Service/"+name]
		if fmt.Sprint(digMap(svc, "spec", "selector")) != fmt.Sprint(selector) {
			t.Errorf("%s: Service selects other pods than the Deployment", name)
		}
	}
	job := objects["Job/gcmtrack-migrate"]
	if args := fmt.Sprint(digList(dig(job, "spec", "template", "spec", "containers", 0), "args")); args != "[migrate]" {
		t.Errorf("migrate Job: args %s", args)
	}
	for _, secret := range []string{"gcmtrack-api", "gcmtrack-projector", "gcmtrack-migrate"} {
		for k, v := range digMap(objects["Secret/"+secret], "stringData") {
			if !strings.Contains(fmt.Sprint(v), "CHANGE_ME") {
				t.Errorf("Secret %s: %s holds a value, not a placeholder", secret, k)
			}
		}
	}

	// Kustomizations list files that exist.
	checkKustomization(t, deployPath("k8s", "kustomization.yaml"))
	checkKustomization(t, deployPath("k8s", "migrate", "kustomization.yaml"))
}

func checkKustomization(t *testing.T, path string) {
	t.Helper()
	doc := yamlDocs(t, path)[0]
	for _, r := range digList(doc, "resources") {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), fmt.Sprint(r))); err != nil {
			t.Errorf("%s: resource %v: %v", path, r, err)
		}
	}
}

// chartRawRE is the NATS chart's marker for a value written unquoted.
var chartRawRE = regexp.MustCompile(`"<<\s+(.*?)\s+>>"`)

// TestNATSHelmValues renders the configuration the NATS chart makes of
// nats-values.yaml (its merge blocks as JSON, "<< x >>" unquoted), parses it
// with nats-server, and compares accounts and permissions with
// deploy/nats/gcm-shared.conf.
func TestNATSHelmValues(t *testing.T) {
	path := deployPath("k8s", "nats-values.yaml")
	values := yamlDocs(t, path)[0]
	if dig(values, "config", "cluster", "enabled") != true || dig(values, "config", "cluster", "replicas") != 3 {
		t.Errorf("%s: cluster not enabled with 3 replicas", path)
	}
	js := digMap(values, "config", "jetstream")
	if js["enabled"] != true || dig(js, "fileStore", "enabled") != true || dig(js, "fileStore", "pvc", "enabled") != true || digString(js, "fileStore", "pvc", "size") == "" {
		t.Errorf("%s: JetStream file storage on a PVC is not enabled", path)
	}
	for env, key := range map[string]string{"GCM_NATS_API_PASSWORD": "api", "GCM_NATS_PROJECTOR_PASSWORD": "projector",
		"GCM_NATS_BACKUP_PASSWORD": "backup", "GCM_NATS_ADMIN_PASSWORD": "admin", "GCM_NATS_SYS_PASSWORD": "sys"} {
		if digString(values, "container", "env", env, "valueFrom", "secretKeyRef", "key") != key {
			t.Errorf("%s: container.env.%s does not come from the Secret's key %s", path, env, key)
		}
	}

	conf := map[string]any{}
	for k, v := range digMap(values, "config", "merge") {
		conf[k] = v
	}
	jsConf := map[string]any{"store_dir": t.TempDir()}
	for k, v := range digMap(js, "merge") {
		jsConf[k] = v
	}
	conf["jetstream"] = jsConf
	// As the chart: JSON without HTML escapes, raw markers unquoted.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(conf); err != nil {
		t.Fatal(err)
	}
	rendered := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(rendered, chartRawRE.ReplaceAll(buf.Bytes(), []byte("$1")), 0o600); err != nil {
		t.Fatal(err)
	}
	setNATSEnv(t)
	helm := loadNATS(t, rendered)
	if !helm.JetStream || !helm.SyncAlways {
		t.Errorf("%s: rendered configuration: JetStream %v, sync always %v", path, helm.JetStream, helm.SyncAlways)
	}
	shared := loadNATS(t, deployPath("nats", "gcm-shared.conf"))
	if helm.SystemAccount != shared.SystemAccount {
		t.Errorf("%s: system account %q, gcm-shared.conf %q", path, helm.SystemAccount, shared.SystemAccount)
	}
	if got, want := usersOf(helm), usersOf(shared); got != want {
		t.Errorf("%s: users and permissions differ from gcm-shared.conf:\n helm: %s\n conf: %s", path, got, want)
	}
}

// usersOf describes each user's account and permissions, in order.
func usersOf(opts *server.Options) string {
	var out []string
	for _, u := range opts.Users {
		desc := u.Username + "@" + u.Account.Name
		if p := u.Permissions; p != nil {
			if p.Publish != nil {
				desc += fmt.Sprintf(" pub allow=%v deny=%v", p.Publish.Allow, p.Publish.Deny)
			}
			if p.Subscribe != nil {
				desc += fmt.Sprintf(" sub allow=%v deny=%v", p.Subscribe.Allow, p.Subscribe.Deny)
			}
		}
		out = append(out, desc)
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// TestKustomizeBuild renders both kustomizations with kubectl's built-in
// kustomize where kubectl is installed (no cluster is needed).
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	for dir, want := range map[string]int{"k8s": 8, "k8s/migrate": 1} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		out, err := exec.CommandContext(ctx, kubectl, "kustomize", deployPath(dir)).Output()
		cancel()
		if err != nil {
			t.Errorf("kubectl kustomize %s: %v", dir, err)
			continue
		}
		docs := 0
		dec := yaml.NewDecoder(bytes.NewReader(out))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("kubectl kustomize %s: output: %v", dir, err)
			}
			docs++
			for _, c := range digList(doc, "spec", "template", "spec", "containers") {
				if img := digString(c, "image"); !strings.Contains(img, "/gcmtrack:") {
					t.Errorf("kubectl kustomize %s: image %q was not set by the kustomization", dir, img)
				}
			}
		}
		if docs != want {
			t.Errorf("kubectl kustomize %s: %d objects, want %d", dir, docs, want)
		}
	}
}
