package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
	"gcmtrack/services/auth"
)

func cmdMigrate(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfg.bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.logger()
	cluster, pool, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopCluster(cluster, log)
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	fmt.Println("migrations applied")
	return nil
}

func cmdRebuild(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	cfg.bind(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gcmtrack rebuild [flags] [projection ...]\n\nRebuilds the named projections (all when none) from the event stream into new tables, then switches readers to them. A running system keeps serving the old tables meanwhile.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(engine.RebuildGCPercent)
	}
	log := cfg.logger()
	p, err := openPlatform(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer p.close()
	if err := migrate(ctx, p.pool); err != nil {
		return err
	}
	js, err := jetstream.New(p.nc)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, "GCM")
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	eng := engine.New(p.pool, stream, engine.Config{Logger: log}, projectionSet()...)
	if err := eng.Prepare(ctx); err != nil {
		return err
	}
	start := time.Now()
	last := map[string]uint64{}
	err = eng.Rebuild(ctx, fs.Args(), func(pr engine.Progress) {
		if last[pr.Name] == pr.Position && !pr.Done {
			return
		}
		last[pr.Name] = pr.Position
		pct := 100.0
		if pr.Last > 0 {
			pct = 100 * float64(pr.Position) / float64(pr.Last)
		}
		fmt.Fprintf(os.Stderr, "\r%-12s %10d / %-10d %5.1f%% %6.1fs", pr.Name, pr.Position, pr.Last, pct, time.Since(start).Seconds())
		if pr.Done {
			fmt.Fprintln(os.Stderr, " done")
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "rebuilt %s in %.1fs\n", strings.Join(orAll(fs.Args()), ", "), time.Since(start).Seconds())
	return nil
}

func orAll(names []string) []string {
	if len(names) == 0 {
		return []string{"all projections"}
	}
	return names
}

func cmdToken(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: gcmtrack token create|list|revoke [flags]")
	}
	var cfg config
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	cfg.bind(fs)
	role := fs.String("role", auth.RoleSecretariat, "admin, monitor or secretariat (create)")
	iscm := fs.String("iscm", "", "the ISCM slug a secretariat token writes for (create)")
	name := fs.String("name", "", "who or what the token is for (create)")
	expires := fs.String("expires", "90d", "lifetime such as 90d, 12h or never (create)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.logger()
	cluster, pool, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopCluster(cluster, log)
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	store := auth.NewStore(pool)
	switch args[0] {
	case "create":
		ttl, err := parseLifetime(*expires)
		if err != nil {
			return err
		}
		if *iscm != "" {
			if _, ok := catalog.Default().ISCM(*iscm); !ok {
				return fmt.Errorf("--iscm %q is not an ISCM of the catalog", *iscm)
			}
		}
		secret, tok, err := store.Create(ctx, auth.NewToken{Name: *name, Role: *role, ISCM: *iscm, TTL: ttl})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "token %s (%s%s) created; it is shown once:\n", tok.ID, tok.Role, iscmSuffix(tok.ISCM))
		fmt.Println(secret)
	case "list":
		toks, err := store.List(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tROLE\tISCM\tCREATED\tEXPIRES\tSTATE")
		for _, t := range toks {
			state := "active"
			switch {
			case t.RevokedAt != nil:
				state = "revoked"
			case t.ExpiresAt != nil && t.ExpiresAt.Before(time.Now()):
				state = "expired"
			}
			exp := "never"
			if t.ExpiresAt != nil {
				exp = t.ExpiresAt.UTC().Format(time.DateOnly)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.ISCM, t.CreatedAt.UTC().Format(time.DateOnly), exp, state)
		}
		return w.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf("usage: gcmtrack token revoke [flags] <token-id or prefix>")
		}
		tok, err := store.Revoke(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Printf("revoked %s (%s)\n", tok.ID, tok.Name)
	default:
		return fmt.Errorf("unknown token command %q: want create, list or revoke", args[0])
	}
	return nil
}

func iscmSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " of " + s
}

// parseLifetime reads "90d", "12h", "30m" or "never".
func parseLifetime(s string) (time.Duration, error) {
	if s == "never" || s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscan(d, &n); err != nil || n <= 0 {
			return 0, fmt.Errorf("--expires %q: want e.g. 90d, 12h or never", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur <= 0 {
		return 0, fmt.Errorf("--expires %q: want e.g. 90d, 12h or never", s)
	}
	return dur, nil
}
