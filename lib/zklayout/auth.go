package zklayout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// Auth is the optional "zk_auth" section: ZooKeeper digest authentication
// and, for a binary that creates nodes, the ACL they get.
type Auth struct {
	User string `yaml:"user"`
	// Password, or PasswordFile: a file readable by its owner only.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// ACL of the nodes created: "world_read" (this user may do anything,
	// everyone may read: kmonitor and zkCli need no credentials), "private"
	// (this user only), or "open" (anyone may do anything, as without
	// zk_auth). Empty means world_read.
	ACL string `yaml:"acl"`
}

// Enabled reports whether the section is set.
func (a Auth) Enabled() bool {
	return a.User != "" || a.Password != "" || a.PasswordFile != "" || a.ACL != ""
}

// Validate records the section's problems under prefix ("zk_auth").
// creates says whether the binary creates nodes (and so may set acl).
func (a Auth) Validate(p *config.Problems, prefix string, creates bool) {
	if !a.Enabled() {
		return
	}
	if a.User == "" {
		p.Add(prefix+".user", "required when zk_auth is set")
	} else if strings.Contains(a.User, ":") {
		// The digest scheme ends the user at the first ':' of
		// "user:password", and refuses an ACL id holding two.
		p.Addf(prefix+".user", a.User, "must not contain ':' (ZooKeeper's digest scheme ends the user name there)")
	}
	p.Secret(prefix, "password", a.Password, a.PasswordFile)
	switch {
	case !creates && a.ACL != "":
		p.Addf(prefix+".acl", a.ACL, "this binary creates no nodes; remove acl")
	case a.ACL != "" && a.ACL != "world_read" && a.ACL != "private" && a.ACL != "open":
		p.Addf(prefix+".acl", a.ACL, "must be world_read, private or open")
	}
}

// credentials returns the digest scheme's "user:password", or nil when the
// section is not set.
func (a Auth) credentials() ([]byte, error) {
	if !a.Enabled() {
		return nil, nil
	}
	pw, err := a.password()
	if err != nil {
		return nil, err
	}
	return []byte(a.User + ":" + pw), nil
}

// Authenticate sends the digest credentials on conn and waits for the
// answer, limit at most; go-zookeeper repeats them on every reconnection.
// Without zk_auth it does nothing. Call it before conn is used for
// anything else: a request the server sees first is not authenticated.
func (a Auth) Authenticate(conn *zk.Conn, limit time.Duration) error {
	return a.AuthenticateContext(context.Background(), conn, limit)
}

// AuthenticateContext is Authenticate that also gives up when ctx ends (a
// stop during start-up). The request left waiting ends when conn is
// closed, which the caller does: conn is not authenticated.
func (a Auth) AuthenticateContext(ctx context.Context, conn *zk.Conn, limit time.Duration) error {
	cred, err := a.credentials()
	if err != nil || cred == nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- conn.AddAuth("digest", cred) }()
	select {
	case err = <-done:
	case <-time.After(limit):
		err = fmt.Errorf("no answer within %v", limit)
	case <-ctx.Done():
		err = fmt.Errorf("no answer yet: %w", context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("zk_auth: digest authentication as %q: %w", a.User, err)
	}
	return nil
}

// NodeACL is the ACL of the nodes to create.
func (a Auth) NodeACL() ([]zk.ACL, error) {
	if !a.Enabled() || a.ACL == "open" {
		return zk.WorldACL(zk.PermAll), nil
	}
	pw, err := a.password()
	if err != nil {
		return nil, err
	}
	acl := zk.DigestACL(zk.PermAll, a.User, pw)
	if a.ACL != "private" {
		acl = append(acl, zk.WorldACL(zk.PermRead)...)
	}
	return acl, nil
}

func (a Auth) password() (string, error) {
	pw, err := config.SecretOf(a.Password, a.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("zk_auth: %w", err)
	}
	return pw, nil
}
