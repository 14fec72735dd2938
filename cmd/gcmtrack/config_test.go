package main

import (
	"strings"
	"testing"
)

func TestMaskURLHidesEveryPassword(t *testing.T) {
	got := maskURL("nats://api:s3cret@nats-1:4222,nats://api:s3cret@nats-2:4222, nats://api:s3cret@nats-3:4222")
	if strings.Contains(got, "s3cret") || strings.Count(got, "xxxxx") != 3 {
		t.Fatalf("maskURL = %q", got)
	}
	if got := maskURL("postgres://gcm_api:pw@db:5432/gcmtrack"); strings.Contains(got, ":pw@") {
		t.Fatalf("maskURL = %q", got)
	}
	if got := maskURL(""); got != "(embedded)" {
		t.Fatalf("maskURL of nothing = %q", got)
	}
}
