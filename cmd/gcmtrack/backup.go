package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"

	"gcmtrack/events"
	"gcmtrack/projections/engine"
	"gcmtrack/services/eventstore"
)

// openNATS connects to NATS alone, for the commands that need no database:
// the external server of --nats-url, or the embedded one of the data
// directory (that of a running `gcmtrack run`, else one started here).
func openNATS(cfg config, log *slog.Logger) (*platform, error) {
	p := &platform{cfg: cfg, log: log}
	var err error
	if cfg.NATSURL != "" {
		p.nc, err = nats.Connect(cfg.NATSURL, nats.Name("gcmtrack-cli"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	} else {
		err = p.openEmbeddedNATS(false)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("NATS: %w", err)
	}
	return p, nil
}

// newBar is a progress bar on stderr for total steps.
func newBar(total uint64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(int64(total),
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
	)
}

func cmdBackup(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	cfg.bind(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: gcmtrack backup [flags] FILE

Writes every event of the stream, with its position, subject, headers and
bytes, to FILE (gzip-compressed JSON Lines with a header line holding the
count, the first and last positions and a SHA-256 of the content). The
system may run meanwhile: the backup holds the stream up to its last
position when the backup starts.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("backup: name one file")
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	file := fs.Arg(0)
	log := cfg.logger()
	p, err := openNATS(cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	js, err := jetstream.New(p.nc)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	start := time.Now()
	var bar *progressbar.ProgressBar
	h, err := eventstore.BackupToFile(ctx, stream, file, func(done, total uint64) {
		if bar == nil {
			bar = newBar(total, "backing up events")
		}
		if done == total || done%500 == 0 {
			_ = bar.Set64(int64(done))
		}
	})
	if err != nil {
		return err
	}
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	fmt.Printf("backed up %d events (positions %d to %d) of stream %s to %s in %.1fs: %d bytes (%d uncompressed), sha256 %s\n",
		h.Count, h.First, h.Last, h.Stream, file, time.Since(start).Seconds(), st.Size(), h.Bytes, h.SHA256)
	return nil
}

func cmdRestore(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	cfg.bind(fs)
	verifyOnly := fs.Bool("verify-only", false, "check the file (format, checksum, positions) and restore nothing")
	noRebuild := fs.Bool("no-rebuild", false, "restore the stream only; rebuild the read models later with gcmtrack rebuild")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: gcmtrack restore [flags] FILE

Restores a backup made by gcmtrack backup into a system whose event stream
is empty (or missing: it is created with --stream-replicas): the file is
checked first, then every event is republished in order at its original
position, then the read models are rebuilt from the restored stream. Stop
the API and the projectors first (an API appends at start); a restore
refuses a stream that holds events.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("restore: name one file")
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	file := fs.Arg(0)
	start := time.Now()
	fmt.Fprintf(os.Stderr, "checking %s …\n", file)
	h, err := eventstore.VerifyBackup(file)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d events (positions %d to %d) of stream %s, backed up %s, sha256 %s: intact\n",
		file, h.Count, h.First, h.Last, h.Stream, h.CreatedAt.Format(time.RFC3339), h.SHA256)
	if *verifyOnly {
		return nil
	}

	log := cfg.logger()
	var p *platform
	if *noRebuild {
		p, err = openNATS(cfg, log)
	} else {
		p, err = openPlatform(ctx, cfg, log, false)
	}
	if err != nil {
		return err
	}
	defer p.close()
	js, err := jetstream.New(p.nc)
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	res, err := eventstore.Restore(ctx, js, file, eventstore.Config{Replicas: cfg.Replicas}, func(done, total uint64) {
		if bar == nil {
			bar = newBar(total, "restoring events")
		}
		if done == total || done%200 == 0 {
			_ = bar.Set64(int64(done))
		}
	})
	if errors.Is(err, eventstore.ErrStreamNotEmpty) {
		return fmt.Errorf("%w\n\nA restore goes into a system without events: stop every gcmtrack (the API appends at start) "+
			"and restore into a fresh --data-dir, or into a NATS whose stream %s is missing", err, events.StreamName)
	}
	if err != nil {
		return err
	}
	fmt.Printf("restored %d events (positions %d to %d) in %.1fs\n", res.Restored, h.First, h.Last, time.Since(start).Seconds())
	if n := len(res.WithoutMsgID); n > 0 {
		fmt.Printf("note: %d events repeated an earlier event's Nats-Msg-Id and were restored without it (positions %v)\n", n, res.WithoutMsgID)
	}
	if *noRebuild {
		fmt.Println("read models not rebuilt: run gcmtrack rebuild before starting the API")
		return nil
	}
	if err := migrate(ctx, p.pool); err != nil {
		return err
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return rebuildWithProgress(ctx, engine.New(p.pool, stream, engine.Config{Logger: log}, projectionSet()...), nil)
}

// rebuildWithProgress rebuilds the named projections (all when none),
// printing their progress on stderr.
func rebuildWithProgress(ctx context.Context, eng *engine.Engine, names []string) error {
	if err := eng.Prepare(ctx); err != nil {
		return err
	}
	start := time.Now()
	last := map[string]uint64{}
	err := eng.Rebuild(ctx, names, func(pr engine.Progress) {
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
	if len(names) == 0 {
		names = eng.Names()
	}
	fmt.Printf("rebuilt %s in %.1fs\n", strings.Join(names, ", "), time.Since(start).Seconds())
	return nil
}
