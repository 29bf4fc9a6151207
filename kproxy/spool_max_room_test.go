package kproxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolMaxBytesWithoutRoomWarned attacks "a key is never taken
// silently": /health says "spool full" once the spool has no room for a
// record of max_message_bytes and what its entry adds (186 bytes at most),
// so a spool_max_bytes below max_message_bytes + 186 makes /health 503
// during any outage, with the spool empty. Below max_message_bytes it is
// refused; from there up to 185 bytes above, the file loaded, started and
// passed -check without a word. It keeps loading (configs that worked keep
// working), and the start and -check warn naming the file, the key and
// its value; at max_message_bytes + 186 and above, nothing is said.
func TestSpoolMaxBytesWithoutRoomWarned(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	const maxMessage = 2 << 20
	for _, tc := range []struct {
		spoolMax int
		warned   bool
	}{
		{maxMessage, true},
		{maxMessage + 185, true},
		{maxMessage + 186, false},
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		doc := fmt.Sprintf("port: 0\nbroker_hosts:\n - %s\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nspool_dir: %s\nmax_message_bytes: %d\nspool_max_bytes: %d\n",
			c.ListenAddrs()[0], t.TempDir(), maxMessage, tc.spoolMax)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := kproxy.LoadConfig(f)
		if err != nil {
			t.Fatalf("spool_max_bytes %d: the file must load: %v", tc.spoolMax, err)
		}
		// -check prints Warnings.
		var checked []string
		for _, w := range cfg.Warnings() {
			if strings.Contains(w, "spool_max_bytes") {
				checked = append(checked, w)
			}
		}
		prefix := fmt.Sprintf("%s: spool_max_bytes: %d ", f, tc.spoolMax)
		switch {
		case tc.warned && (len(checked) != 1 || !strings.HasPrefix(checked[0], prefix)):
			t.Errorf("spool_max_bytes %d: -check warnings %q, want one starting %q", tc.spoolMax, cfg.Warnings(), prefix)
		case !tc.warned && len(checked) > 0:
			t.Errorf("spool_max_bytes %d: -check warnings %q, want none", tc.spoolMax, checked)
		}
		logged, out := startWarnings(t, cfg, "key=spool_max_bytes")
		want := fmt.Sprintf("value=%d", tc.spoolMax)
		switch {
		case tc.warned && (len(logged) != 1 || !strings.Contains(logged[0], "file="+f) || !strings.Contains(logged[0], want)):
			t.Errorf("spool_max_bytes %d: start warnings %q, want one naming file=%s and %s; log:\n%s", tc.spoolMax, logged, f, want, out)
		case !tc.warned && len(logged) > 0:
			t.Errorf("spool_max_bytes %d: start warnings %q, want none", tc.spoolMax, logged)
		}
	}
}
