// Package migrations applies versioned SQL migrations to PostgreSQL with
// goose. It carries the projection engine's own tables (builds and their
// checkpoints, dead letters) and applies other packages' migration sets the
// same way, each with its own version table.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sql/*.sql
var engineSQL embed.FS

// Set is one package's migrations.
type Set struct {
	Name  string // used for the version table: goose_<name>
	Files fs.FS  // the .sql files, at the root
}

// Engine is the projection engine's migration set.
func Engine() Set {
	sub, err := fs.Sub(engineSQL, "sql")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return Set{Name: "engine", Files: sub}
}

// Up applies every pending migration of each set, in order, under a
// PostgreSQL advisory lock so that several processes starting at once do not
// race.
func Up(ctx context.Context, pool *pgxpool.Pool, sets ...Set) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	for _, s := range sets {
		if err := up(ctx, db, s); err != nil {
			return err
		}
	}
	return nil
}

func up(ctx context.Context, db *sql.DB, s Set) error {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrate %s: %w", s.Name, err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, s.Files,
		goose.WithTableName("goose_"+s.Name),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", s.Name, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", s.Name, err)
	}
	return nil
}
