package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// cmdNATSNode runs one NATS server with JetStream from a nats-server
// configuration file (deploy/nats/nats-N.conf), with its addresses and
// store directory optionally overridden: a cluster node from the same
// binary, for machines without nats-server and for the chaos test, which
// starts, kills and restarts three of them on loopback.
func cmdNATSNode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nats-node", flag.ContinueOnError)
	conf := fs.String("config", "", "nats-server configuration file (required), e.g. deploy/nats/nats-1.conf")
	name := fs.String("name", "", "server name (overrides server_name)")
	host := fs.String("host", "", "client listen host (overrides host)")
	port := fs.Int("port", 0, "client port (overrides port; -1 picks a free one)")
	httpPort := fs.Int("http-port", 0, "monitoring port (overrides http_port; 0 turns it off)")
	clusterHost := fs.String("cluster-host", "", "cluster listen host (overrides cluster.host)")
	clusterPort := fs.Int("cluster-port", 0, "cluster port (overrides cluster.port)")
	routes := fs.String("routes", "", "comma-separated route URLs of the other nodes (overrides cluster.routes)")
	storeDir := fs.String("store-dir", "", "JetStream store directory (overrides jetstream.store_dir)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: gcmtrack nats-node --config FILE [flags]

Runs one NATS server with JetStream from a nats-server configuration file,
with the flags given overriding the file, until interrupted. Passwords the
file reads from the environment ($GCM_NATS_*_PASSWORD) must be set.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conf == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("nats-node: --config is required and takes no arguments")
	}
	opts, err := server.ProcessConfigFile(*conf)
	if err != nil {
		return fmt.Errorf("nats-node: %w", err)
	}
	var routeErr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "name":
			opts.ServerName = *name
		case "host":
			opts.Host = *host
		case "port":
			opts.Port = *port
		case "http-port":
			opts.HTTPPort = *httpPort
		case "cluster-host":
			opts.Cluster.Host = *clusterHost
		case "cluster-port":
			opts.Cluster.Port = *clusterPort
		case "routes":
			opts.Routes = server.RoutesFromStr(*routes)
			if len(opts.Routes) == 0 && *routes != "" {
				routeErr = fmt.Errorf("nats-node: --routes %q: no valid route URL", *routes)
			}
		case "store-dir":
			opts.StoreDir = *storeDir
		}
	})
	if routeErr != nil {
		return routeErr
	}
	if !opts.JetStream {
		return fmt.Errorf("nats-node: %s does not enable JetStream", *conf)
	}
	// Signals end the context; the server must not act on them itself.
	opts.NoSigs, opts.Logtime = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-node: %w", err)
	}
	s.ConfigureLogger()
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return errors.New("nats-node: not ready for connections within 30 s (see the log above)")
	}
	fmt.Fprintf(os.Stderr, "NATS node %s listening on %s\n", s.Name(), s.ClientURL())
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
