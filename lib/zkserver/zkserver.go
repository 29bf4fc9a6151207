// Package zkserver starts a private ZooKeeper server from Debian's
// zookeeper package, listening on loopback only. The dev stack and the tests
// use it; production runs an ensemble of its own.
package zkserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	cfg    Config // as started, with the port chosen
	quorum bool

	mu   sync.Mutex
	proc *process // the current server process
}

// process is one run of the server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
	err  error
}

// Config says where the server keeps its data and which port it takes.
type Config struct {
	Dir          string        // data directory, created if needed
	Port         int           // 0: a free loopback port
	TickMs       int           // 0: 500 ms (session timeouts are 2–20 ticks)
	MaxSessionMs int           // 0: 20 ticks; the longest session timeout granted
	StartFor     time.Duration // 0: a minute, for the server to serve
	Jar          string        // "": Debian's Jar

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
		// A JVM's start on a loaded machine (tests of other packages
		// beside, the race detector) can take tens of seconds; a server
		// that fails exits, which the wait sees at once.
		cfg.StartFor = time.Minute
	}
	if cfg.Port == 0 {
		// A port free a moment ago can be taken before the server binds
		// it (tests start servers side by side): a server that exits at
		// start is tried again on another port.
		for attempt := 1; ; attempt++ {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			cfg.Port = p
			s, err := Start(cfg)
			if err == nil || !errors.Is(err, errExited) || attempt == bindAttempts {
				return s, err
			}
		}
	}
	dataDir := filepath.Join(cfg.Dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create zookeeper data dir: %w", err)
	}
	lines := []string{
		"tickTime=" + strconv.Itoa(cfg.TickMs),
		"dataDir=" + dataDir,
		"clientPort=" + strconv.Itoa(cfg.Port),
		"clientPortAddress=127.0.0.1",
		"admin.enableServer=false",
		"4lw.commands.whitelist=ruok,srvr,mntr,conf",
		"maxClientCnxns=0",
	}
	if cfg.MaxSessionMs > 0 {
		lines = append(lines, "maxSessionTimeout="+strconv.Itoa(cfg.MaxSessionMs))
	}
	if len(cfg.Peers) > 0 {
		lines = append(lines, "initLimit=10", "syncLimit=5")
		for i, peer := range cfg.Peers {
			lines = append(lines, fmt.Sprintf("server.%d=%s", i+1, peer))
		}
		if err := os.WriteFile(filepath.Join(dataDir, "myid"), []byte(strconv.Itoa(cfg.ID)), 0o644); err != nil {
			return nil, fmt.Errorf("write myid: %w", err)
		}
	}
	conf := strings.Join(append(lines, ""), "\n")
	if err := os.WriteFile(filepath.Join(cfg.Dir, "zoo.cfg"), []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write zoo.cfg: %w", err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)), Dir: cfg.Dir, cfg: cfg, quorum: len(cfg.Peers) > 0}
	if err := s.launch(); err != nil {
		return nil, err
	}
	return s, nil
}

// launch starts the server process from the zoo.cfg in s.Dir and waits
// until it serves.
func (s *Server) launch() error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "zookeeper.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open zookeeper log: %w", err)
	}
	defer logf.Close()
	mainClass := "org.apache.zookeeper.server.ZooKeeperServerMain"
	if s.quorum {
		mainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
	}
	cmd := exec.Command("java", "-Xmx256m", "-Dzookeeper.log.dir="+s.Dir,
		"-cp", ConfDir+":"+s.cfg.Jar, mainClass, filepath.Join(s.Dir, "zoo.cfg"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server dies with whoever started it, even on kill -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start zookeeper: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StartFor)
	defer cancel()
	if err := s.waitReady(ctx, p); err != nil {
		s.Stop()
		// Quoted: a test's directory, and the log in it, go with the test.
		return fmt.Errorf("zookeeper on %s did not start: %w; the end of %s/zookeeper.out:\n%s", s.Addr, err, s.Dir, logTail(logf.Name()))
	}
	return nil
}

// logTail is the last lines of the log at path, at most 20 and 4 KB.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func (s *Server) waitReady(ctx context.Context, p *process) error {
	for {
		// "srvr" has a Mode once the server takes sessions; "ruok"
		// answers earlier, while first connections are still dropped.
		// The server answering must be this one, not another that took
		// the port first (this one then exits): its data directory says.
		if Serving(s.Addr) && s.owns(s.Addr) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v", errExited, p.err)
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

// owns reports whether the server answering at addr keeps its data in
// s.Dir ("conf" names its dataDir).
func (s *Server) owns(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("conf")); err != nil {
		return false
	}
	// ZooKeeper names it absolute, with its version-2 subdirectory.
	want, err := filepath.Abs(filepath.Join(s.Dir, "data"))
	if err != nil {
		return false
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "dataDir="); ok {
			v, _ = filepath.Abs(v)
			return v == want || strings.HasPrefix(v, want+string(filepath.Separator))
		}
		if err != nil {
			return false
		}
	}
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
// A server that exits at start (one of its ports taken meanwhile: free a
// moment ago is all FreePort knows) has the whole ensemble tried again on
// other ports, under dir/retryN.
func StartEnsemble(dir string, n int) ([]*Server, error) {
	for attempt := 1; ; attempt++ {
		d := dir
		if attempt > 1 {
			d = filepath.Join(dir, "retry"+strconv.Itoa(attempt))
		}
		servers, err := startEnsemble(d, n)
		if err == nil || !errors.Is(err, errExited) || attempt == bindAttempts {
			return servers, err
		}
	}
}

func startEnsemble(dir string, n int) ([]*Server, error) {
	var peers []string
	ports := make([]int, n)
	for i := range n {
		var err error
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		ep, err := freePort()
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
func (s *Server) Pid() int { return s.current().cmd.Process.Pid }

func (s *Server) current() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Stop terminates the server and waits for it; idempotent.
func (s *Server) Stop() error {
	p := s.current()
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	p := s.current()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Restart starts the server again, stopping it first if it runs, on the
// same port with the same data directory, as an operator's restart does:
// the nodes and the sessions in its data directory survive, and a client
// that reconnects before its session times out keeps it. It returns once
// the server serves.
func (s *Server) Restart() error {
	s.Stop()
	return s.launch()
}

// errExited: the server process ended before it served.
var errExited = errors.New("process exited")

// bindAttempts bounds the starts tried on fresh ports when a server exits
// at start.
const bindAttempts = 3

// freePort is FreePort; tests replace it to hand out a taken port.
var freePort = FreePort

// FreePort returns a loopback TCP port that was free a moment ago. It is
// below Linux's ephemeral range (32768-60999), where the kernel picks the
// local ports of connections: a server stopped and started again on its
// port finds it free, not taken meanwhile by a connection of a process
// running beside it.
func FreePort() (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			l.Close()
			return p, nil
		}
	}
	return 0, errors.New("find a free port: none free of 200 tried within 20000-31999")
}
