package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The end-to-end test drives Debian's Chromium, headless, against the real
// binary on loopback: a secretariat records a position and an activity
// through the forms, sees a validation error, submits; an admin publishes;
// the public page and the JSON feed show the records; the dashboard's
// figures changed. Screenshots of the main pages go to test-artifacts/.

const chromium = "/usr/bin/chromium"

func TestBrowserEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium and the binary")
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Chromium is not installed at %s (CI installs it: apt-get install chromium)", chromium)
		}
		t.Skipf("Chromium is not installed at %s; apt-get install chromium", chromium)
	}
	artifacts, err := filepath.Abs("../../test-artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "gcmtrack")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/gcmtrack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	for p := dir; p != "/" && p != "."; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(p, st.Mode().Perm()|0o011)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const admin = "gcm_e2e_bootstrap_admin_token_0123456789"
	run := exec.Command(bin, "run", "--data-dir", dir, "--http-addr", addr)
	run.Env = append(os.Environ(), "GCM_BOOTSTRAP_ADMIN_TOKEN="+admin, "GCM_LOG_LEVEL=warn")
	logf, _ := os.Create(filepath.Join(artifacts, "gcmtrack.log"))
	run.Stdout, run.Stderr = logf, logf
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = run.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = run.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = run.Process.Kill()
		}
		logf.Close()
	})
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		if res, err := http.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("gcmtrack run not ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Mexico must be a member for the activity's State picker.
	req, _ := http.NewRequest("POST", base+"/v1/iscms/puebla-process/members", strings.NewReader(`{"state":"MEX"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 201 {
		t.Fatalf("add member: %v %v", err, res)
	}
	out, err := exec.Command(bin, "token", "create", "--data-dir", dir, "--role", "secretariat", "--iscm", "puebla-process", "--name", "RCM secretariat").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	secretariat := strings.TrimSpace(string(out))

	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // start the browser without a deadline
		t.Fatalf("start Chromium: %v", err)
	}
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelT()

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(artifacts, name+".png"), buf, 0o644)
		})
	}
	// leave waits until a form's post has taken the browser off a page.
	leave := func(path string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			for {
				loc, err := chromedp.Location()(ctx, tg)
				if err == nil && !strings.HasSuffix(strings.SplitN(loc, "?", 2)[0], path) {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("still on %s: %w", path, ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	signin := func(token string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(base+"/signin"),
			chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), token),
			chromedp.Submit(chromedp.ID("token")),
			leave("/signin"),
			chromedp.WaitVisible(chromedp.CSS("main h1")),
		)
	}
	text := func(sel any) string {
		t.Helper()
		var v string
		var err error
		switch s := sel.(type) {
		case chromedp.CSS:
			v, err = chromedp.Run(ctx, chromedp.Text(s))
		case chromedp.ID:
			v, err = chromedp.Run(ctx, chromedp.Text(s))
		case string:
			v, err = chromedp.Run(ctx, chromedp.Text(s))
		}
		if err != nil {
			t.Fatalf("text of %v: %v", sel, err)
		}
		return v
	}
	// A secretariat records a position and an activity.
	err = chromedp.Do(ctx,
		signin(secretariat),
		shot("1-workspace"),
		chromedp.Navigate(base+"/workspace/puebla-process/positions/new"),
		chromedp.WaitVisible(chromedp.CSS(`select[name="status"]`)),
		chromedp.SetValue(chromedp.CSS(`select[name="status"]`), "yes"),
		chromedp.Click(chromedp.CSS(`input[name="objectives"][value="1"]`)),
		chromedp.Click(chromedp.CSS(`input[name="objectives"][value="23"]`)),
		chromedp.Click(chromedp.CSS(`input[name="themes"][value="T2"]`)),
		chromedp.SendKeys(chromedp.CSS(`[id="f-document.title"]`), "Declaration of the XXII Regional Conference on Migration"),
		chromedp.Submit(chromedp.CSS(`form.record`)),
		leave("/new"),
		chromedp.WaitVisible(chromedp.CSS(`.badge`)),
		shot("2-position"),
		chromedp.Click(`//button[normalize-space()="Submit to IOM"]`),
		chromedp.WaitVisible(`//span[contains(@class,"badge") and normalize-space()="Submitted"]`),
	)
	if err != nil {
		t.Fatalf("secretariat records a position: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(loc, "/workspace/puebla-process/positions/puebla-process") {
		t.Errorf("after saving the position the browser is at %s (%v)", loc, err)
	}
	// An activity with a bad link: the error shows next to the field.
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/workspace/puebla-process/activities/new"),
		chromedp.WaitVisible(chromedp.CSS(`select[name="kind"]`)),
		chromedp.SetValue(chromedp.CSS(`select[name="kind"]`), "capacity_building"),
		chromedp.SetValue(chromedp.CSS(`select[name="form"]`), "training_workshop"),
		chromedp.SendKeys(chromedp.ID("f-title"), "Regional workshop on migration data"),
		chromedp.Click(chromedp.CSS(`input[name="states"][value="MEX"]`)),
		chromedp.Click(chromedp.CSS(`input[name="objectives"][value="1"]`)),
		chromedp.SendKeys(chromedp.ID("f-url"), "javascript:alert(1)"),
		chromedp.Submit(chromedp.CSS(`form.record`)),
		chromedp.WaitVisible(chromedp.ID("err-url")),
		shot("3-validation-error"),
	)
	if err != nil {
		t.Fatalf("activity with a bad link: %v", err)
	}
	if msg := text(chromedp.ID("err-url")); !strings.Contains(msg, "http(s)") {
		t.Errorf("the URL error reads %q", msg)
	}
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("f-url"), "https://example.org/workshop"),
		chromedp.Submit(chromedp.CSS(`form.record`)),
		leave("/new"),
		chromedp.WaitVisible(`//button[normalize-space()="Submit to IOM"]`),
		chromedp.Click(`//button[normalize-space()="Submit to IOM"]`),
		chromedp.WaitVisible(`//span[contains(@class,"badge") and normalize-space()="Submitted"]`),
		chromedp.Click(`//header//button[normalize-space()="Sign out"]`),
		chromedp.WaitVisible(`//header//a[normalize-space()="Sign in"]`),
	)
	if err != nil {
		t.Fatalf("secretariat submits: %v", err)
	}
	// An admin publishes from the dashboard; its ISCM row changes.
	row := `//tr[th/a[normalize-space()="RCM (Puebla Process)"]]`
	err = chromedp.Do(ctx,
		signin(admin),
		chromedp.Navigate(base+"/dashboard"),
		chromedp.WaitVisible(`//h2[normalize-space()="Awaiting approval"]`),
		shot("4-dashboard-queue"),
	)
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	publicRow := func() string {
		t.Helper()
		res, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		page := string(b)
		i := strings.Index(page, `href="/iscms/puebla-process"`)
		if i < 0 {
			t.Fatal("the public home page lacks the Puebla Process")
		}
		return page[i:min(len(page), i+600)]
	}
	publicBefore := publicRow()
	before := text(row)
	for range 2 {
		prev, _ := chromedp.Run(ctx, chromedp.Location())
		if err := chromedp.Do(ctx, chromedp.Click(`(//button[normalize-space()="Publish"])[1]`)); err != nil {
			t.Fatalf("publish: %v", err)
		}
		// The form posts and comes back to the dashboard at a new position.
		for deadline := time.Now().Add(20 * time.Second); ; {
			if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != prev && strings.Contains(loc, "min_position=") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("publishing did not return to the dashboard")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := chromedp.Do(ctx, chromedp.WaitVisible(`//h2[normalize-space()="Awaiting approval"]`)); err != nil {
			t.Fatalf("dashboard after publishing: %v", err)
		}
	}
	after := text(row)
	publicAfter := publicRow()
	err = chromedp.Do(ctx,
		shot("5-dashboard-published"),
		chromedp.Navigate(base+"/iscms/puebla-process"),
		chromedp.WaitVisible(chromedp.CSS("main h1")),
		shot("6-public-iscm"),
	)
	if err != nil {
		t.Fatalf("public page: %v", err)
	}
	public := text(chromedp.CSS("main"))
	for _, p := range []string{"objectives", "figures", "states", "recommendations"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"+p), chromedp.WaitVisible(chromedp.CSS("main h1")), shot("7-"+p)); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	// IOM's dashboard counts submitted records already; the public counts
	// change when IOM publishes.
	if !strings.Contains(before, "yes") || !strings.Contains(after, "yes") {
		t.Errorf("the dashboard does not show the submitted position:\nbefore: %s\nafter:  %s", before, after)
	}
	if strings.Contains(publicBefore, "<td>yes</td>") || !strings.Contains(publicAfter, "<td>yes</td>") {
		t.Errorf("the public overview did not change with publication:\nbefore: %s\nafter:  %s", publicBefore, publicAfter)
	}
	if !strings.Contains(public, "Regional workshop on migration data") {
		t.Errorf("the public page lacks the published activity: %s", public)
	}
	res, err := http.Get(base + "/v1/feeds/published.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var feed struct {
		Items []struct {
			Title string `json:"title"`
		} `json:"items"`
	}
	if err := json.NewDecoder(res.Body).Decode(&feed); err != nil {
		t.Fatal(err)
	}
	titles := fmt.Sprint(feed.Items)
	if len(feed.Items) != 2 || !strings.Contains(titles, "Regional workshop on migration data") {
		t.Errorf("the JSON feed holds %s", titles)
	}
}
