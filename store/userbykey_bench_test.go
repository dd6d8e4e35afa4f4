package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// BenchmarkUserByKey is the auth lookup of store mode: one per offered
// key and one per channel.
func BenchmarkUserByKey(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "ds01.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var fp string
	for i := range 50 {
		pk, _, _ := ed25519.GenerateKey(rand.Reader)
		pub, _ := ssh.NewPublicKey(pk)
		line := string(ssh.MarshalAuthorizedKey(pub))
		if err := s.AddUser(ctx, User{Name: fmt.Sprintf("u%d", i), UID: 1000 + i, GID: 1000 + i}, []Key{{AuthorizedKey: line}}); err != nil {
			b.Fatal(err)
		}
		fp = ssh.FingerprintSHA256(pub)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := s.UserByKey(ctx, fp); err != nil {
			b.Fatal(err)
		}
	}
}
