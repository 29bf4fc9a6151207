package zkserver

import (
	"strings"
	"testing"
	"time"
)

func TestMissingServerNamesInstallCommand(t *testing.T) {
	_, err := Start(Config{Dir: t.TempDir(), Jar: "/nonexistent/zookeeper.jar"})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y zookeeper") {
		t.Fatalf("Start without the jar: %v; want the install command", err)
	}
}

func TestStartStop(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ruok(s.Addr); err != nil {
		t.Fatalf("ruok: %v", err)
	}
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Errorf("listens on %s, want loopback", s.Addr)
	}
	s.Stop()
	if err := Ruok(s.Addr); err == nil {
		t.Errorf("still answering after Stop")
	}
	s.Stop() // idempotent
}

func TestEnsemble(t *testing.T) {
	servers, err := StartEnsemble(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for _, s := range servers {
		if !Serving(s.Addr) {
			t.Errorf("%s not serving", s.Addr)
		}
	}
	servers[0].Stop()
	// Two of three still form a quorum.
	deadline := time.Now().Add(20 * time.Second)
	for !(Serving(servers[1].Addr) && Serving(servers[2].Addr)) {
		if time.Now().After(deadline) {
			t.Fatal("the two remaining servers do not serve")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
