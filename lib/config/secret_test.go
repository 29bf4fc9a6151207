package config_test

import (
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// TestSecretFileThatIsADirectoryToldSo: a password_file (or secret_file)
// naming a directory was answered "readable by group or others; chmod
// 600 it": an operator doing so is then told something else. It is told
// at once that the path names no regular file.
func TestSecretFileThatIsADirectoryToldSo(t *testing.T) {
	dir := t.TempDir() // mode 0700
	if _, err := config.ReadSecretFile(dir + "/"); err == nil || !strings.Contains(err.Error(), "not a regular file (a directory)") {
		t.Errorf("ReadSecretFile of a directory (0700): %v", err)
	}
	if _, err := config.ReadSecretFile("/tmp"); err == nil || !strings.Contains(err.Error(), "not a regular file (a directory)") {
		t.Errorf("ReadSecretFile of a directory (1777): %v", err)
	}
}
