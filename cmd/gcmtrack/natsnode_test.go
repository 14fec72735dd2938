package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
)

// TestNATSNodeRunsTheDeployedCluster starts the three nodes of deploy/nats
// as `gcmtrack nats-node` processes on loopback and stores an event at
// three replicas.
func TestNATSNodeRunsTheDeployedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	var env []string
	for _, v := range []string{"API", "PROJECTOR", "BACKUP", "ADMIN", "SYS"} {
		h, err := bcrypt.GenerateFromPassword([]byte("pw-"+strings.ToLower(v)), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, "GCM_NATS_"+v+"_PASSWORD="+string(h))
	}
	ports := make([]int, 6)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var urls []string
	for i := range 3 {
		var routes []string
		for j := range 3 {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+j]))
			}
		}
		cmd := exec.Command(bin, "nats-node", "--config", filepath.Join("..", "..", "deploy", "nats", fmt.Sprintf("nats-%d.conf", i+1)),
			"--host", "127.0.0.1", "--port", fmt.Sprint(ports[i]), "--http-port", "0",
			"--cluster-host", "127.0.0.1", "--cluster-port", fmt.Sprint(ports[3+i]),
			"--routes", strings.Join(routes, ","), "--store-dir", t.TempDir())
		cmd.Env = append(os.Environ(), env...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Errorf("nats-node %d stopped with %v after SIGTERM\n%s", i+1, err, out.String())
			}
		})
		urls = append(urls, fmt.Sprintf("nats://admin:pw-admin@127.0.0.1:%d", ports[i]))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no R3 stream on the three nodes within a minute: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	ack, err := js.Publish(context.Background(), "t.1", []byte("x"))
	if err != nil || ack.Sequence != 1 {
		t.Fatalf("publish: %v %+v", err, ack)
	}
	s, err := js.Stream(context.Background(), "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream info %+v, %v: want a leader and two replicas", info, err)
	}
}
