package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// FuzzConfigLoaders feeds arbitrary files to the four loaders (kproxy,
// ktransfer, a ktransfer module, kmonitor). Whatever the input, a loader
// returns; and every problem it reports names the file, as an operator
// reading a start-up error needs.
func FuzzConfigLoaders(f *testing.F) {
	for _, pattern := range []string{"*.yaml", "modules/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("port: [1, 2]\nkafka: {sasl: {mechanism: 7}}\n"))
	f.Add([]byte("zk_auth: {user: u, password: p, acl: private}\nkafka: {tls: {enable: true}}\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		check := func(what string, err error) {
			if err == nil {
				return
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, name) {
					t.Fatalf("%s: problem does not name the file: %q", what, line)
				}
			}
		}
		kp := kproxy.DefaultConfig()
		if err := config.Decode(name, data, &kp); err != nil {
			check("kproxy decode", err)
		} else {
			check("kproxy", kp.Validate(name))
		}
		kt := ktransfer.DefaultConfig()
		if err := config.Decode(name, data, &kt); err != nil {
			check("ktransfer decode", err)
		} else {
			check("ktransfer", kt.Validate(name))
		}
		m := ktransfer.DefaultModule()
		m.Name, m.File = "fuzz", name
		if err := config.Decode(name, data, &m); err != nil {
			check("module decode", err)
		} else {
			check("module", m.Validate())
		}
		km := kmonitor.DefaultConfig()
		if err := config.Decode(name, data, &km); err != nil {
			check("kmonitor decode", err)
		} else {
			check("kmonitor", km.Validate(name))
		}
	})
}
