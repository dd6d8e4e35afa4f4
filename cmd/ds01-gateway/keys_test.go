package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/commands"
	"github.com/ds01/ds01-gateway/store"
)

func pubKeyLine(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := gossh.NewPublicKey(pub)
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk)))
}

// key-add and key-remove record events naming the key and the address;
// a duplicate is refused without its owner's name.
func TestStoreKeysEvents(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "ds01.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first, other := pubKeyLine(t), pubKeyLine(t)
	u := store.User{Name: "ann", UID: 1001, GID: 1001}
	if err := st.AddUser(ctx, u, []store.Key{{AuthorizedKey: first}}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(ctx, store.User{Name: "bob", UID: 1002, GID: 1002}, []store.Key{{AuthorizedKey: other}}); err != nil {
		t.Fatal(err)
	}
	keys := storeKeys{st}
	nk, err := commands.ParseNewKey(pubKeyLine(t) + " laptop")
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.AddOwnKey(ctx, u, nk, "192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	dup, _ := commands.ParseNewKey(other)
	if err := keys.AddOwnKey(ctx, u, dup, "192.0.2.9"); !errors.Is(err, commands.ErrKeyInUse) || strings.Contains(err.Error(), "bob") {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := keys.RemoveOwnKey(ctx, u, nk.Fingerprint, "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	evs, err := st.ListEvents(ctx, store.EventFilter{User: "ann"})
	if err != nil || len(evs) != 2 {
		t.Fatalf("events: %+v %v", evs, err)
	}
	if evs[1].Type != "key.add" || !strings.Contains(evs[1].Details, nk.Fingerprint) || !strings.Contains(evs[1].Details, `"from":"192.0.2.9"`) ||
		evs[0].Type != "key.remove" || !strings.Contains(evs[0].Details, `"from":"192.0.2.10"`) {
		t.Errorf("events: %+v", evs)
	}
}
