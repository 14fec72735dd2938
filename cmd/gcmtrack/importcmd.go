package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// importItem is one ISCM's answers to send.
type importItem struct {
	ISCM    string          `json:"iscm"`
	Cycle   int             `json:"cycle"`
	Channel string          `json:"channel"`
	Answers json.RawMessage `json:"answers"`
	from    string
}

// cmdImport sends questionnaire answers to a running GCM Tracker through its
// API, like any client: the same validation, one event per answer set.
func cmdImport(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "questionnaire" {
		return errors.New("usage: gcmtrack import questionnaire FILE.json|DIR|ARRAY.json [--iscm SLUG] --cycle YEAR [--channel interview]")
	}
	var cfg config
	fs := flag.NewFlagSet("import questionnaire", flag.ContinueOnError)
	cfg.bind(fs)
	iscm := fs.String("iscm", "", "the ISCM the answers are from (a single file of answers)")
	cycle := fs.Int("cycle", 0, "the reporting cycle (year), e.g. 2018")
	channel := fs.String("channel", "questionnaire", "questionnaire or interview")
	server := fs.String("server", "", "the API's base URL (default: http://<http-addr>)")
	token := fs.String("token", env("GCM_TOKEN", ""), "an admin or secretariat token (env GCM_TOKEN)")
	// Flags may follow the path.
	var paths []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(paths) != 1 {
		return errors.New("import questionnaire: give one file or directory")
	}
	if *token == "" {
		return errors.New("import questionnaire: a token is needed (--token or GCM_TOKEN)")
	}
	if *server == "" {
		*server = "http://" + cfg.HTTPAddr
	}
	items, err := loadImport(paths[0], *iscm, *cycle, *channel)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second}
	bar := progressbar.NewOptions(len(items),
		progressbar.OptionSetDescription("importing answers"),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
	)
	var failed []string
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := putAnswers(ctx, client, *server, *token, it); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%s %d %s): %v", it.from, it.ISCM, it.Cycle, it.Channel, err))
		}
		_ = bar.Add(1)
	}
	fmt.Fprintf(os.Stderr, "%d of %d answer sets imported\n", len(items)-len(failed), len(items))
	for _, f := range failed {
		fmt.Fprintln(os.Stderr, "  failed:", f)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d answer sets failed", len(failed))
	}
	return nil
}

// loadImport reads answers from a file of one answer set (with --iscm), a
// file holding a JSON array of {iscm, cycle, channel, answers}, or a
// directory of <iscm-slug>.json files.
func loadImport(path, iscm string, cycle int, channel string) ([]importItem, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var files []string
	if st.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("%s holds no .json files", path)
		}
	} else {
		files = []string{path}
	}
	var items []importItem
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		trimmed := bytes.TrimSpace(b)
		switch {
		case len(trimmed) > 0 && trimmed[0] == '[':
			var arr []importItem
			dec := json.NewDecoder(bytes.NewReader(trimmed))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&arr); err != nil {
				return nil, fmt.Errorf("%s: want an array of {iscm, cycle, channel, answers}: %w", f, err)
			}
			for i := range arr {
				arr[i].from = fmt.Sprintf("%s[%d]", f, i)
				if arr[i].Cycle == 0 {
					arr[i].Cycle = cycle
				}
				if arr[i].Channel == "" {
					arr[i].Channel = channel
				}
				if arr[i].ISCM == "" || len(arr[i].Answers) == 0 {
					return nil, fmt.Errorf("%s: iscm and answers are required", arr[i].from)
				}
			}
			items = append(items, arr...)
		default:
			slug := iscm
			if st.IsDir() {
				slug = strings.TrimSuffix(filepath.Base(f), ".json")
			}
			if slug == "" {
				return nil, fmt.Errorf("%s: which ISCM? give --iscm", f)
			}
			items = append(items, importItem{ISCM: slug, Cycle: cycle, Channel: channel, Answers: trimmed, from: f})
		}
	}
	for _, it := range items {
		if it.Cycle == 0 {
			return nil, fmt.Errorf("%s: which cycle? give --cycle", it.from)
		}
	}
	return items, nil
}

// putAnswers sends one answer set. The Idempotency-Key is the content's
// hash, so running the same import twice stores each answer set once.
func putAnswers(ctx context.Context, c *http.Client, server, token string, it importItem) error {
	url := fmt.Sprintf("%s/v1/iscms/%s/questionnaires/%d/%s", strings.TrimRight(server, "/"), it.ISCM, it.Cycle, it.Channel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(it.Answers))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(append([]byte(url+"\x00"), it.Answers...))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "import-"+hex.EncodeToString(sum[:16]))
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if res.StatusCode/100 == 2 {
		return nil
	}
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return fmt.Errorf("%d: %s", res.StatusCode, p.Detail)
	}
	return fmt.Errorf("HTTP %d", res.StatusCode)
}
