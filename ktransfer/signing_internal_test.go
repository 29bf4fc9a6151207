package ktransfer

import "testing"

// TestSignerMatchesPublishedVector: the specification's published example
// (its reference libraries' test) signed by ktransfer's signer.
func TestSignerMatchesPublishedVector(t *testing.T) {
	key, err := decodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	s := &signer{keys: [][]byte{key, key}}
	got := string(s.appendSignature(nil, []byte("msg_p5jXN8AQM9LWM0D4loKWxJek"), 1614265330, []byte(`{"test": 2432232314}`)))
	const want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	if got != want+" "+want {
		t.Errorf("signature %q, want %q twice", got, want)
	}
	if id := string(appendID(nil, "orders.v1", 3, 42)); id != "orders.v1-3-42" {
		t.Errorf("webhook-id %q", id)
	}
}
