// Command gcmtrack is GCM Tracker in one binary: the API, the projectors,
// and on a laptop an embedded NATS JetStream and a PostgreSQL cluster it
// starts itself.
//
//	gcmtrack run      [flags]                 start the system (--target=all|api|projector)
//	gcmtrack migrate  [flags]                 apply the database migrations
//	gcmtrack rebuild  [flags] [projection…]   rebuild read models from the stream, with progress
//	gcmtrack token    create|list|revoke …    manage API tokens
//	gcmtrack import   questionnaire PATH …    send questionnaire answers to a running system
//	gcmtrack backup   [flags] FILE            write the whole event stream to a file
//	gcmtrack restore  [flags] FILE            restore a backup into an empty system and rebuild
//	gcmtrack deadletters list|retry …         show or re-apply events projections parked
//	gcmtrack nats-node --config FILE …        run one clustered NATS JetStream node
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "gcmtrack:", err)
		os.Exit(1)
	}
}

const usage = `usage: gcmtrack <command> [flags]

commands:
  run       start GCM Tracker (embedded NATS and PostgreSQL unless --nats-url/--database-url)
  migrate   apply the database migrations and exit
  rebuild   rebuild read models from the event stream (all, or the named projections)
  token     create, list or revoke API tokens
  import    import questionnaire answers into a running system (import questionnaire FILE|DIR)
  backup    write every event of the stream to a file (backup FILE); the system may run
  restore   restore a backup into a system without events, then rebuild the read models
  deadletters
            list the events projections parked (deadletters list), or re-apply them after
            a fix (deadletters retry [POSITION…])
  nats-node run one NATS JetStream node from a nats-server configuration file

Run 'gcmtrack <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:])
	case "migrate":
		return cmdMigrate(ctx, args[1:])
	case "rebuild":
		return cmdRebuild(ctx, args[1:])
	case "token":
		return cmdToken(ctx, args[1:])
	case "import":
		return cmdImport(ctx, args[1:])
	case "backup":
		return cmdBackup(ctx, args[1:])
	case "restore":
		return cmdRestore(ctx, args[1:])
	case "deadletters":
		return cmdDeadLetters(ctx, args[1:])
	case "nats-node":
		return cmdNATSNode(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
