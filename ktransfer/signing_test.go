package ktransfer_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// verifyWebhook checks a request as the Standard Webhooks specification
// tells a consumer to, written from the specification and not from
// ktransfer's code: the secret is "whsec_" and the base64 of the key; the
// signed content is "<webhook-id>.<webhook-timestamp>.<body>"; the
// webhook-signature header is a space-separated list of "v1,<base64
// HMAC-SHA256>", one of which must match (compared in constant time); the
// timestamp must be within tolerance of now (0: not checked).
func verifyWebhook(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("secret: %w", err)
	}
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %w", ts, err)
	}
	if tolerance > 0 && (now.Sub(time.Unix(sec, 0)) > tolerance || time.Unix(sec, 0).Sub(now) > tolerance) {
		return fmt.Errorf("webhook-timestamp %d too far from now (%d)", sec, now.Unix())
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Split(sigs, " ") {
		version, b64, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(b64); err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

// The specification's published example (its reference libraries' test):
// secret, id, timestamp, body and the signature they give.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = "1614265330"
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// TestVerifierAgreesWithTheSpecVector: the test's verifier accepts the
// published example and refuses it altered, so that it can be trusted to
// judge ktransfer's pushes.
func TestVerifierAgreesWithTheSpecVector(t *testing.T) {
	h := http.Header{}
	h.Set("webhook-id", vectorID)
	h.Set("webhook-timestamp", vectorTimestamp)
	h.Set("webhook-signature", vectorSignature)
	if err := verifyWebhook(vectorSecret, h, []byte(vectorBody), time.Now(), 0); err != nil {
		t.Fatalf("the published example does not verify: %v", err)
	}
	if err := verifyWebhook(vectorSecret, h, []byte(vectorBody+" "), time.Now(), 0); err == nil {
		t.Error("a body with a byte more verifies")
	}
	if err := verifyWebhook(newSecret(t), h, []byte(vectorBody), time.Now(), 0); err == nil {
		t.Error("another secret verifies")
	}
	h.Set("webhook-timestamp", "1614265331")
	if err := verifyWebhook(vectorSecret, h, []byte(vectorBody), time.Now(), 0); err == nil {
		t.Error("another timestamp verifies")
	}
}

func newSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// writeSecretFile writes secret to a file of the mode given.
func writeSecretFile(t *testing.T, secret string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(path, []byte(secret+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // the umask may have narrowed it
		t.Fatal(err)
	}
	return path
}

// TestSignedPushes: with two secrets (one inline, one in a file, as while
// rotating) every push carries webhook-id <topic>-<partition>-<offset>,
// the attempt's webhook-timestamp and two v1 signatures; each secret
// verifies it with the independent verifier, another secret does not; a
// retry carries the same id and its own, later timestamp. Neither secret
// appears in the log (at debug level) nor in /status.
func TestSignedPushes(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "orders.v1", Partitions: 2})
	current, old, wrong := newSecret(t), newSecret(t), newSecret(t)
	oldFile := writeSecretFile(t, old, 0o600)
	var refused atomic.Bool
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.body == "later" && refused.CompareAndSwap(false, true) {
			w.Header().Set("Retry-After", "1") // the retry comes in a later second
			w.WriteHeader(429)
		}
	})
	m := module("m", "orders.v1", b.URL)
	m.Protocol.SigningSecrets = []string{current, oldFile}
	var recs [][2]string
	for i := range 20 {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i%5), "body " + strconv.Itoa(i)})
	}
	recs = append(recs, [2]string{"r", "later"})
	e.produce(t, "orders.v1", recs)
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "21 records pushed, one of them twice", 15*time.Second, func() bool { return len(b.got()) >= 22 })

	var later []push
	for _, p := range b.got() {
		now := p.at
		if err := verifyWebhook(current, p.header, []byte(p.body), now, 5*time.Second); err != nil {
			t.Errorf("push %s/%s with the current secret: %v", p.partition, p.offset, err)
		}
		if err := verifyWebhook(old, p.header, []byte(p.body), now, 5*time.Second); err != nil {
			t.Errorf("push %s/%s with the old secret: %v", p.partition, p.offset, err)
		}
		if err := verifyWebhook(wrong, p.header, []byte(p.body), now, 5*time.Second); err == nil {
			t.Errorf("push %s/%s verifies with a secret ktransfer does not have", p.partition, p.offset)
		}
		if id := p.header.Get("webhook-id"); id != "orders.v1-"+p.partition+"-"+p.offset {
			t.Errorf("webhook-id %q; want orders.v1-%s-%s", id, p.partition, p.offset)
		}
		if n := len(strings.Split(p.header.Get("webhook-signature"), " ")); n != 2 {
			t.Errorf("webhook-signature %q: %d signatures, want 2", p.header.Get("webhook-signature"), n)
		}
		if p.body == "later" {
			later = append(later, p)
		}
	}
	if len(later) != 2 {
		t.Fatalf("the refused record was pushed %d times, want 2", len(later))
	}
	t0, _ := strconv.ParseInt(later[0].header.Get("webhook-timestamp"), 10, 64)
	t1, _ := strconv.ParseInt(later[1].header.Get("webhook-timestamp"), 10, 64)
	if later[0].header.Get("webhook-id") != later[1].header.Get("webhook-id") || t1 <= t0 {
		t.Errorf("retry after Retry-After: 1: ids %q %q, timestamps %d %d; want the same id and a later timestamp",
			later[0].header.Get("webhook-id"), later[1].header.Get("webhook-id"), t0, t1)
	}

	status, _ := json.Marshal(tr.Status())
	for what, text := range map[string]string{"log": logs.String(), "/status": string(status)} {
		for _, s := range []string{current, old, strings.TrimPrefix(current, "whsec_"), strings.TrimPrefix(old, "whsec_")} {
			if strings.Contains(text, s) {
				t.Errorf("a signing secret appears in the %s", what)
			}
		}
	}
}

// signingSecretsError writes a module file with signing_secrets and
// returns its path and the error loading it gives (fatal if it loads).
func signingSecretsError(t *testing.T, secrets ...string) (file, text string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "m.yaml")
	yaml := "topic: t\nprotocol:\n uri: /p\n signing_secrets:\n"
	for _, s := range secrets {
		yaml += "  - " + s + "\n"
	}
	yaml += "backend_servers: [127.0.0.1:1]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ktransfer.LoadModule(file)
	if err == nil {
		t.Fatal("loaded")
	}
	return file, err.Error()
}

// TestSigningSecretProblems: a secret file others can read, a missing
// file, and inline secrets that are not Standard Webhooks keys are refused
// at start, each naming the module file, the field and the value — an
// existing file's path, never a secret.
func TestSigningSecretProblems(t *testing.T) {
	readable := writeSecretFile(t, newSecret(t), 0o640)
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!"))
	notB64 := "whsec_this-is-not*base64"
	missing := filepath.Join(t.TempDir(), "nope.key")
	file, text := signingSecretsError(t, readable, missing, short, notB64)
	for _, want := range []string{
		file + `: protocol.signing_secrets[0]: ` + readable + ` is readable by group or others (mode -rw-r-----); chmod 600 it, got "` + readable + `"`,
		file + `: protocol.signing_secrets[1]: neither a whsec_ secret nor a readable file (value not shown)`,
		file + `: protocol.signing_secrets[2]: the key is 16 bytes; Standard Webhooks keys are 24 to 64 bytes, got "whsec_…"`,
		file + `: protocol.signing_secrets[3]: whsec_ is not followed by standard base64, got "whsec_…"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("error lacks %q:\n%s", want, text)
		}
	}
	for _, secret := range []string{strings.TrimPrefix(short, "whsec_"), strings.TrimPrefix(notB64, "whsec_")} {
		if strings.Contains(text, secret) {
			t.Errorf("the error shows a secret:\n%s", text)
		}
	}
}

// TestSigningSecretTypedWithoutPrefixNotPrinted: a secret typed without
// its whsec_ prefix (bare base64, or the prefix in upper case) is not a
// file either; the start-up error says so by index and never shows the
// value — nor does it show a path that names no file.
func TestSigningSecretTypedWithoutPrefixNotPrinted(t *testing.T) {
	bare := base64.StdEncoding.EncodeToString([]byte("a secret of thirty-two bytes!!!!"))
	upper := "WHSEC_" + base64.StdEncoding.EncodeToString([]byte("another secret, 32 bytes long!!!"))
	missing := filepath.Join(t.TempDir(), "nope.key")
	file, text := signingSecretsError(t, bare, upper, missing)
	for i := range 3 {
		if want := fmt.Sprintf("%s: protocol.signing_secrets[%d]: neither a whsec_ secret nor a readable file (value not shown)", file, i); !strings.Contains(text, want) {
			t.Errorf("error lacks %q:\n%s", want, text)
		}
	}
	for _, v := range []string{bare, bare[:8], upper[6:], upper[6:14], missing, "nope.key"} {
		if strings.Contains(text, v) {
			t.Errorf("the error shows %q:\n%s", v, text)
		}
	}
}
