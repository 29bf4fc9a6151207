package zklayout

import (
	"log/slog"

	"github.com/go-zookeeper/zk"
)

// HostProvider is the server list of one ZooKeeper client (a fresh one
// for each zk.Connect): every name of zk_hosts is looked up on its own,
// and one that does not resolve (a server retired from DNS, its entry
// gone) is left out with a warning while another one resolves. Without
// it the client failed on the first such name and never reached the
// servers that answer.
func HostProvider(log *slog.Logger) zk.HostProvider {
	return zk.NewDNSHostProvider(zk.WithLeftOut(func(server string, err error) {
		log.Warn("zookeeper server left out: its name does not resolve; the other servers are used", "server", server, "err", err)
	}))
}
