package ktransfer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// Signed pushes follow Standard Webhooks (www.standardwebhooks.com):
//
//	webhook-id:        <topic>-<partition>-<offset>   (the same on every attempt and on a replay)
//	webhook-timestamp: <unix seconds of this attempt>
//	webhook-signature: v1,<base64 HMAC-SHA256(key, id.timestamp.body)> [one per secret, space-separated]
//
// The id holds no part a producer chooses: the topic comes from the module
// file, the partition and offset from Kafka.

// secretPrefix marks a symmetric Standard Webhooks secret.
const secretPrefix = "whsec_"

// The spec's bounds of a symmetric key: 24 to 64 bytes.
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// signingKeys decodes protocol.signing_secrets, recording the problems of
// each in p. A value starting whsec_ is the secret itself; anything else
// is the path of a file holding one, readable by its owner only. A problem
// names an existing file by its path and an inline secret only by its
// prefix; a value that names no file is not shown at all (it may be a
// secret typed without its prefix): the secret is never printed.
func signingKeys(p *config.Problems, secrets []string) [][]byte {
	var keys [][]byte
	for i, s := range secrets {
		field := "protocol.signing_secrets[" + strconv.Itoa(i) + "]"
		if strings.HasPrefix(s, secretPrefix) {
			k, err := decodeSecret(s)
			if err != nil {
				p.Addf(field, secretPrefix+"…", "%v", err)
				continue
			}
			keys = append(keys, k)
			continue
		}
		if s == "" {
			p.Addf(field, s, "must be whsec_<base64> or the path of a file holding one")
			continue
		}
		if _, err := os.Stat(s); err != nil {
			// Most likely a secret typed without its prefix (bare
			// base64, WHSEC_…): the value is not shown, not even as a path.
			p.Add(field, "neither a "+secretPrefix+" secret nor a readable file (value not shown)")
			continue
		}
		text, err := config.ReadSecretFile(s)
		if err == nil {
			var k []byte
			if k, err = decodeSecret(text); err == nil {
				keys = append(keys, k)
				continue
			}
			err = fmt.Errorf("the file's content: %w", err)
		}
		p.Addf(field, s, "%v", err)
	}
	return keys
}

// decodeSecret decodes whsec_<base64>. Its error says what is wrong
// without quoting the secret.
func decodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("must be %s<base64>", secretPrefix)
	}
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%s is not followed by standard base64", secretPrefix)
	}
	if len(k) < minSecretBytes || len(k) > maxSecretBytes {
		return nil, fmt.Errorf("the key is %d bytes; Standard Webhooks keys are %d to %d bytes", len(k), minSecretBytes, maxSecretBytes)
	}
	return k, nil
}

// signer signs pushes with every configured key.
type signer struct{ keys [][]byte }

// appendID appends a record's webhook-id: <topic>-<partition>-<offset>.
func appendID(dst []byte, topic string, partition int32, offset int64) []byte {
	dst = append(dst, topic...)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, int64(partition), 10)
	dst = append(dst, '-')
	return strconv.AppendInt(dst, offset, 10)
}

// appendSignature appends the webhook-signature value of id, timestamp
// and body: one v1,<base64> per key, space-separated.
func (s *signer) appendSignature(dst, id []byte, timestamp int64, body []byte) []byte {
	var ts [20]byte
	var sum [sha256.Size]byte
	for i, k := range s.keys {
		if i > 0 {
			dst = append(dst, ' ')
		}
		mac := hmac.New(sha256.New, k)
		mac.Write(id)
		mac.Write([]byte{'.'})
		mac.Write(strconv.AppendInt(ts[:0], timestamp, 10))
		mac.Write([]byte{'.'})
		mac.Write(body)
		dst = append(dst, "v1,"...)
		dst = base64.StdEncoding.AppendEncode(dst, mac.Sum(sum[:0]))
	}
	return dst
}
