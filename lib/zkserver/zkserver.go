// Package zkserver starts a private ZooKeeper server from Debian's
// zookeeper package, listening on loopback only. The dev stack and the tests
// use it; production runs an ensemble of its own.
package zkserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Jar is where Debian's zookeeper package installs the server.
const Jar = "/usr/share/java/zookeeper.jar"

// ConfDir holds the package's log4j configuration.
const ConfDir = "/etc/zookeeper/conf"

// InstallHint says how to get the server.
const InstallHint = "apt-get update && apt-get install -y zookeeper"

// Server is a running ZooKeeper process.
type Server struct {
	Addr   string // host:port clients connect to
	Dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	quorum bool
}

// Config says where the server keeps its data and which port it takes.
type Config struct {
	Dir      string // data directory, created if needed
	Port     int    // 0: a free loopback port
	TickMs   int    // 0: 500 ms (session timeouts are 2–20 ticks)
	StartFor time.Duration
	Jar      string // "": Debian's Jar

	// For an ensemble member: its id (1-based) and every member's
	// "host:peerPort:electionPort", in id order.
	ID    int
	Peers []string
}

// Installed reports an error naming the install command when the server
// jar is missing.
func Installed(jar string) error {
	if _, err := os.Stat(jar); err != nil {
		return fmt.Errorf("zookeeper is not installed (%s missing); install it with: %s", jar, InstallHint)
	}
	if _, err := exec.LookPath("java"); err != nil {
		return fmt.Errorf("java is not on PATH; zookeeper needs it: %s", InstallHint)
	}
	return nil
}

// Start launches a server and waits until it answers.
func Start(cfg Config) (*Server, error) {
	if cfg.Jar == "" {
		cfg.Jar = Jar
	}
	if err := Installed(cfg.Jar); err != nil {
		return nil, err
	}
	if cfg.TickMs == 0 {
		cfg.TickMs = 500
	}
	if cfg.StartFor == 0 {
		cfg.StartFor = 30 * time.Second
	}
	port := cfg.Port
	if port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		port = p
	}
	dataDir := filepath.Join(cfg.Dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create zookeeper data dir: %w", err)
	}
	lines := []string{
		"tickTime=" + strconv.Itoa(cfg.TickMs),
		"dataDir=" + dataDir,
		"clientPort=" + strconv.Itoa(port),
		"clientPortAddress=127.0.0.1",
		"admin.enableServer=false",
		"4lw.commands.whitelist=ruok,srvr,mntr",
		"maxClientCnxns=0",
	}
	mainClass := "org.apache.zookeeper.server.ZooKeeperServerMain"
	if len(cfg.Peers) > 0 {
		mainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
		lines = append(lines, "initLimit=10", "syncLimit=5")
		for i, peer := range cfg.Peers {
			lines = append(lines, fmt.Sprintf("server.%d=%s", i+1, peer))
		}
		if err := os.WriteFile(filepath.Join(dataDir, "myid"), []byte(strconv.Itoa(cfg.ID)), 0o644); err != nil {
			return nil, fmt.Errorf("write myid: %w", err)
		}
	}
	conf := strings.Join(append(lines, ""), "\n")
	cfgPath := filepath.Join(cfg.Dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write zoo.cfg: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(cfg.Dir, "zookeeper.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open zookeeper log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("java", "-Xmx256m", "-Dzookeeper.log.dir="+cfg.Dir,
		"-cp", ConfDir+":"+cfg.Jar, mainClass, cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server dies with whoever started it, even on kill -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: cfg.Dir, cmd: cmd, done: make(chan struct{}),
		quorum: len(cfg.Peers) > 0}
	go func() { s.err = cmd.Wait(); close(s.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartFor)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, fmt.Errorf("zookeeper on %s did not start (see %s/zookeeper.out): %w", s.Addr, cfg.Dir, err)
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	for {
		// "srvr" has a Mode once the server takes sessions; "ruok"
		// answers earlier, while first connections are still dropped.
		if Serving(s.Addr) {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("process exited: %v", s.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ruok asks the server at addr whether it is serving.
func Ruok(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return err
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "imok") {
		return fmt.Errorf("answered %q", line)
	}
	return nil
}

// Serving reports whether the server at addr serves clients: a member of
// an ensemble does only once it is in a quorum ("srvr" then has a Mode).
func Serving(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	var b strings.Builder
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			break
		}
	}
	return strings.Contains(b.String(), "Mode: ")
}

// StartEnsemble starts n servers forming one ensemble on loopback ports,
// with data under dir, and waits until each serves.
func StartEnsemble(dir string, n int) ([]*Server, error) {
	var peers []string
	ports := make([]int, n)
	for i := range n {
		var err error
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
		pp, err := FreePort()
		if err != nil {
			return nil, err
		}
		ep, err := FreePort()
		if err != nil {
			return nil, err
		}
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d:%d", pp, ep))
	}
	servers := make([]*Server, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			s, err := Start(Config{Dir: filepath.Join(dir, "zk"+strconv.Itoa(i+1)), Port: ports[i], ID: i + 1, Peers: peers, StartFor: time.Minute})
			servers[i] = s
			errs <- err
		}()
	}
	var firstErr error
	for range n {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		for _, s := range servers {
			if s != nil {
				s.Stop()
			}
		}
		return nil, firstErr
	}
	return servers, nil
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop terminates the server and waits for it; idempotent.
func (s *Server) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
