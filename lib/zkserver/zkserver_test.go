package zkserver

import (
	"strings"
	"testing"
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
