package commands

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/store"
)

type fakeKeys struct {
	keys    []KeyInfo
	added   []store.Key
	from    string
	taken   map[string]bool
	removed []string
}

func (f *fakeKeys) OwnKeys(context.Context, store.User) ([]KeyInfo, error) { return f.keys, nil }

func (f *fakeKeys) AddOwnKey(_ context.Context, _ store.User, k store.Key, from string) error {
	if f.taken[k.Fingerprint] {
		return ErrKeyInUse
	}
	f.added, f.from = append(f.added, k), from
	return nil
}

func (f *fakeKeys) RemoveOwnKey(_ context.Context, _ store.User, fp, _ string) (KeyInfo, error) {
	if len(f.keys) == 1 && f.keys[0].Fingerprint == fp {
		return KeyInfo{}, store.ErrLastKey
	}
	for _, k := range f.keys {
		if k.Fingerprint == fp {
			f.removed = append(f.removed, fp)
			return k, nil
		}
	}
	return KeyInfo{}, store.ErrNotFound
}

func edKey(t *testing.T) (string, string) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	pk, _ := gossh.NewPublicKey(pub)
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))), gossh.FingerprintSHA256(pk)
}

func runKeys(t *testing.T, k *fakeKeys, stdin, line, current string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Service: &fakeService{Keys: k}, User: store.User{Name: "ann"}, Login: "ds01", Host: "gw",
		Stdout: &out, Stderr: &errb, KeyFingerprint: current, Remote: "192.0.2.5"}
	if stdin != "" {
		env.Stdin = strings.NewReader(stdin)
	}
	return RunLine(context.Background(), env, line), out.String(), errb.String()
}

func TestKeyAdd(t *testing.T) {
	line, fp := edKey(t)
	k := &fakeKeys{taken: map[string]bool{}}
	code, _, errs := runKeys(t, k, "\n"+line+" laptop\n", "key-add", "")
	if code != 0 || len(k.added) != 1 || k.added[0].Fingerprint != fp || k.added[0].Comment != "laptop" || k.from != "192.0.2.5" {
		t.Fatalf("key-add: %d %q %+v", code, errs, k.added)
	}
	if !strings.Contains(errs, "key "+fp+" (ssh-ed25519) added") {
		t.Errorf("key-add says %q", errs)
	}
	k.taken[fp] = true
	if code, _, errs := runKeys(t, k, line, "key-add", ""); code != 1 || !strings.Contains(errs, "already registered") || strings.Contains(errs, "ann") {
		t.Errorf("a registered key: %d %q", code, errs)
	}

	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	spk, _ := gossh.NewPublicKey(&small.PublicKey)
	for _, tc := range []struct{ in, want string }{
		{"", "give the public key on stdin"},
		{"not a key", "not a public key line"},
		{`command="x" ` + line, "options (command=\"x\") are not accepted"},
		{line + "\n" + line, ""}, // the second line is never read
		{string(gossh.MarshalAuthorizedKey(spk)), "RSA key of 1024 bits"},
		{strings.Repeat("x", maxKeyLine+10), "longer than"},
	} {
		k := &fakeKeys{taken: map[string]bool{}}
		code, _, errs := runKeys(t, k, tc.in, "key-add", "")
		if tc.want == "" {
			if code != 0 || len(k.added) != 1 {
				t.Errorf("%.30q: %d %q", tc.in, code, errs)
			}
			continue
		}
		if code != ExitUsage || !strings.Contains(errs, tc.want) || len(k.added) != 0 {
			t.Errorf("%.30q: want exit 2 and %q, got %d %q", tc.in, tc.want, code, errs)
		}
	}
}

func TestKeyListAndRemove(t *testing.T) {
	_, fp1 := edKey(t)
	_, fp2 := edKey(t)
	k := &fakeKeys{keys: []KeyInfo{
		{Fingerprint: fp1, Type: "ssh-ed25519", Comment: "desk", Added: time.Now(), AddedVia: "admin"},
		{Fingerprint: fp2, Type: "ssh-ed25519", AddedVia: "key-add", AddedFrom: "192.0.2.5"},
	}}
	code, out, _ := runKeys(t, k, "", "key-list", fp2)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || strings.HasPrefix(lines[1], "*") || !strings.HasPrefix(lines[2], "*") || !strings.Contains(lines[2], "key-add from 192.0.2.5") {
		t.Errorf("key-list: %d\n%s", code, out)
	}
	if code, out, _ := runKeys(t, k, "", "key-list --format json", fp2); code != 0 || !strings.Contains(out, `"current": true`) || !strings.Contains(out, `"added_via": "admin"`) {
		t.Errorf("key-list json: %s", out)
	}
	if code, _, errs := runKeys(t, k, "", "key-remove SHA256:nope", fp2); code != 1 || !strings.Contains(errs, "you have no key SHA256:nope") {
		t.Errorf("unknown key: %d %q", code, errs)
	}
	if code, _, errs := runKeys(t, k, "", "key-remove "+fp1, fp2); code != 0 || !strings.Contains(errs, "removed") {
		t.Errorf("remove: %d %q", code, errs)
	}
	k.keys = k.keys[1:]
	if code, _, errs := runKeys(t, k, "", "key-remove "+fp2, fp2); code != 1 || !strings.Contains(errs, "is your only key: add another first") {
		t.Errorf("last key: %d %q", code, errs)
	}
	if code, _, _ := runKeys(t, k, "", "key-remove laptop", fp2); code != ExitUsage {
		t.Errorf("not a fingerprint: exit %d", code)
	}
}
