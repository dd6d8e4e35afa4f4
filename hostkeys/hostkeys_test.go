package hostkeys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

var keyFiles = []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key", "ssh_host_rsa_key"}

func marshalAll(t *testing.T, signers []ssh.Signer) [][]byte {
	t.Helper()
	out := make([][]byte, len(signers))
	for i, s := range signers {
		out[i] = s.PublicKey().Marshal()
	}
	return out
}

func sameKeys(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// generated returns a directory holding a freshly generated key set, plus
// the ECDSA key an older installation generated; tests copy it rather than
// paying for RSA generation each time.
var generated = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "hostkeys-test-")
	if err != nil {
		return "", err
	}
	if _, err = LoadOrGenerate(dir); err != nil {
		return dir, err
	}
	return dir, writeECDSA(filepath.Join(dir, "ssh_host_ecdsa_key"))
})

// writeECDSA writes a P-256 key as the gateway generated it before ECDSA
// keys were dropped.
func writeECDSA(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

func copyKeys(t *testing.T) string {
	t.Helper()
	src, err := generated()
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	for _, name := range keyFiles {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := generated(); err == nil && dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

func TestGenerateThenLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // does not exist yet
	first, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	// No ECDSA key: NIST curves fail audits, so new installations get none.
	wantTypes := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSA}
	if len(first) != len(wantTypes) {
		t.Fatalf("%d signers, want %d", len(first), len(wantTypes))
	}
	for i, s := range first {
		if got := s.PublicKey().Type(); got != wantTypes[i] {
			t.Errorf("signer %d type %s, want %s", i, got, wantTypes[i])
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "ssh_host_ecdsa_key")); !os.IsNotExist(err) {
		t.Errorf("an ECDSA key was generated (lstat: %v)", err)
	}
	rsaPub := first[1].PublicKey().(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
	if bits := rsaPub.N.BitLen(); bits != 3072 {
		t.Errorf("rsa key has %d bits, want 3072", bits)
	}

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode %04o, want 0700", got)
	}
	for i, name := range []string{"ssh_host_ed25519_key", "ssh_host_rsa_key"} {
		path := filepath.Join(dir, name)
		checkMode(t, path, 0o600)
		checkMode(t, path+".pub", 0o644)
		pub, err := os.ReadFile(path + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pub, ssh.MarshalAuthorizedKey(first[i].PublicKey())) {
			t.Errorf("%s.pub = %q, does not match the key", name, pub)
		}
	}
	checkNoTemps(t, dir)

	second, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(marshalAll(t, first), marshalAll(t, second)) {
		t.Error("second load returned different keys")
	}
}

func TestConcurrentFirstCalls(t *testing.T) {
	dir := t.TempDir()
	const n = 3
	results := make([][]ssh.Signer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = LoadOrGenerate(dir) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := marshalAll(t, results[0])
	for i := 1; i < n; i++ {
		if !sameKeys(want, marshalAll(t, results[i])) {
			t.Fatalf("caller %d got different keys than caller 0", i)
		}
	}
	after, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(want, marshalAll(t, after)) {
		t.Error("keys on disk differ from those returned to the racing callers")
	}
	checkNoTemps(t, dir)
}

// TestGenerateLosesRace covers the caller that finishes generating after
// another caller already published a key: the published key must stay.
func TestGenerateLosesRace(t *testing.T) {
	dir := copyKeys(t)
	for i, sp := range specs {
		if sp.generate == nil {
			continue
		}
		path := filepath.Join(dir, keyFiles[i])
		before := snapshot(t, path)
		if err := generate(path, sp); err != nil {
			t.Fatalf("generate %s: %v", sp.name, err)
		}
		if after := snapshot(t, path); after != before {
			t.Errorf("generate replaced existing %s", keyFiles[i])
		}
	}
	checkNoTemps(t, dir)
}

func TestRefusesUnusableFiles(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		setup   func(t *testing.T, path string)
		wantMsg string
	}{
		{"group readable", "ssh_host_ed25519_key", func(t *testing.T, p string) { chmod(t, p, 0o640) }, "chmod 600"},
		{"world readable", "ssh_host_rsa_key", func(t *testing.T, p string) { chmod(t, p, 0o604) }, "chmod 600"},
		{"garbage", "ssh_host_ecdsa_key", func(t *testing.T, p string) { write(t, p, []byte("not a key\n")) }, "corrupt"},
		{"empty", "ssh_host_ed25519_key", func(t *testing.T, p string) { write(t, p, nil) }, "corrupt"},
		{"truncated", "ssh_host_rsa_key", func(t *testing.T, p string) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			write(t, p, data[:len(data)/2])
		}, "corrupt"},
		{"wrong type", "ssh_host_rsa_key", func(t *testing.T, p string) {
			data, err := os.ReadFile(filepath.Join(filepath.Dir(p), "ssh_host_ed25519_key"))
			if err != nil {
				t.Fatal(err)
			}
			write(t, p, data)
		}, "holds a ssh-ed25519 key"},
		{"directory", "ssh_host_ecdsa_key", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyKeys(t)
			path := filepath.Join(dir, tc.file)
			tc.setup(t, path)
			before := snapshot(t, path)

			_, err := LoadOrGenerate(dir)
			if err == nil {
				t.Fatal("LoadOrGenerate succeeded, want error")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q should name %s and say %q", err, path, tc.wantMsg)
			}
			// Never replace a key the admin has to look at.
			if after := snapshot(t, path); after != before {
				t.Errorf("%s changed: %q -> %q", tc.file, before, after)
			}
		})
	}
}

func TestRewritesPub(t *testing.T) {
	dir := copyKeys(t)
	signers, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	ed := filepath.Join(dir, "ssh_host_ed25519_key.pub")
	rsaPub := filepath.Join(dir, "ssh_host_rsa_key.pub")
	if err := os.Remove(ed); err != nil {
		t.Fatal(err)
	}
	write(t, rsaPub, []byte("stale\n"))
	if _, err := LoadOrGenerate(dir); err != nil {
		t.Fatal(err)
	}
	for path, s := range map[string]ssh.Signer{ed: signers[0], rsaPub: signers[2]} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, ssh.MarshalAuthorizedKey(s.PublicKey())) {
			t.Errorf("%s not rewritten: %q", filepath.Base(path), got)
		}
		checkMode(t, path, 0o644)
	}
}

// TestLoadsOpenSSHKeys checks that keys made by ssh-keygen, as an admin
// might bring from an existing server, are used as they are.
func TestLoadsOpenSSHKeys(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed")
	}
	dir := t.TempDir()
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		path := filepath.Join(dir, "ssh_host_"+typ+"_key")
		out, err := exec.Command(keygen, "-q", "-t", typ, "-N", "", "-f", path).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -t %s: %v\n%s", typ, err, out)
		}
		// Compare against what ssh-keygen wrote: it must not be regenerated.
		if err := os.Remove(path + ".pub"); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, filepath.Join(dir, "ssh_host_rsa_key"))
	if _, err := LoadOrGenerate(dir); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, filepath.Join(dir, "ssh_host_rsa_key")); after != before {
		t.Error("ssh-keygen key was replaced")
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", filepath.Base(path), got, want)
	}
}

func checkNoTemps(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// snapshot describes a path's type, mode and content for change detection.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.IsDir() {
		return "dir"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().String() + " " + string(data)
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// write replaces path's content, keeping its mode.
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// An upgraded installation keeps its ECDSA key: it is loaded as it is (so
// an admin can still offer it), never regenerated or rewritten.
func TestKeepsExistingECDSAKey(t *testing.T) {
	dir := copyKeys(t)
	path := filepath.Join(dir, "ssh_host_ecdsa_key")
	before := snapshot(t, path)
	signers, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, s := range signers {
		types = append(types, s.PublicKey().Type())
	}
	if want := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSA}; !slices.Equal(types, want) {
		t.Errorf("signers %v, want %v", types, want)
	}
	if after := snapshot(t, path); after != before {
		t.Error("the ECDSA key file changed")
	}
	if pub, err := os.ReadFile(path + ".pub"); err != nil || !bytes.Equal(pub, ssh.MarshalAuthorizedKey(signers[1].PublicKey())) {
		t.Errorf("ssh_host_ecdsa_key.pub: %q, %v", pub, err)
	}
}
