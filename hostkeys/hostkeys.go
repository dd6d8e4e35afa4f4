// Package hostkeys loads the gateway's SSH host keys, generating the
// ed25519 and RSA keys the first time they are missing.
//
// A host key must never change silently: clients pin it, and a new key
// looks exactly like a man-in-the-middle. So a key file that exists but
// cannot be used is an error for the admin to resolve, never a reason to
// generate a replacement.
package hostkeys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// keySpec describes one host key: its file name and how to make one.
type keySpec struct {
	name     string // ssh_host_<name>_key, as OpenSSH names it
	wantType string // public key type (or prefix) the file must hold
	// generate makes a new key; nil means the key is only loaded when its
	// file exists.
	generate func() (crypto.PrivateKey, error)
}

// specs is in preference order: the server offers host keys in this order.
var specs = []keySpec{
	{"ed25519", ssh.KeyAlgoED25519, func() (crypto.PrivateKey, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}},
	// ECDSA keys use NIST curves, which audits (ssh-audit) fail, so no
	// new one is made; one that an older installation generated, or an
	// admin brought (P-256, P-384 or P-521), is kept and loaded, so that
	// the gateway can offer it to clients that pinned it when an admin
	// lists it in host_key_algorithms.
	{"ecdsa", "ecdsa-sha2-", nil},
	{"rsa", ssh.KeyAlgoRSA, func() (crypto.PrivateKey, error) {
		return rsa.GenerateKey(rand.Reader, 3072)
	}},
}

// LoadOrGenerate returns the host keys in dir: ed25519 and rsa, generating
// and saving those that do not exist yet, and ecdsa when its file exists.
// dir is created 0700 if missing. Beside each private key
// ssh_host_<type>_key it keeps ssh_host_<type>_key.pub up to date so
// admins can publish fingerprints.
//
// Concurrent callers, in one process or several, end up with the same keys.
func LoadOrGenerate(dir string) ([]ssh.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host keys: create dir: %w", err)
	}
	signers := make([]ssh.Signer, 0, len(specs))
	for _, sp := range specs {
		s, err := loadOrGenerate(dir, sp)
		if err != nil {
			return nil, fmt.Errorf("host keys: %w", err)
		}
		if s != nil {
			signers = append(signers, s)
		}
	}
	return signers, nil
}

// loadOrGenerate returns nil and no error for a missing key that is not
// generated.
func loadOrGenerate(dir string, sp keySpec) (ssh.Signer, error) {
	path := filepath.Join(dir, "ssh_host_"+sp.name+"_key")
	signer, err := load(path, sp)
	if errors.Is(err, fs.ErrNotExist) && sp.generate == nil {
		return nil, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err := generate(path, sp); err != nil {
			return nil, err
		}
		// Read back what is on disk rather than trusting our own key: if
		// another caller created the file first, its key is the one.
		signer, err = load(path, sp)
	}
	if err != nil {
		return nil, err
	}
	if err := writePub(path+".pub", signer.PublicKey()); err != nil {
		return nil, err
	}
	return signer, nil
}

// load reads and checks one private key file. It returns an error wrapping
// fs.ErrNotExist only when the file does not exist.
func load(path string, sp keySpec) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open host key: %w", err)
	}
	defer f.Close()
	// Check the mode of the file we opened, not of the path, so the file
	// checked is the file read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat host key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("host key %s is not a regular file", path)
	}
	// The same rule as OpenSSH: a private key others can read is no
	// longer private, so refuse it rather than serve with it.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("host key %s has mode %04o, which lets group or others access it; run: chmod 600 %s",
			path, perm, path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read host key %s: %w", path, err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("host key %s is protected by a passphrase; host keys must be unencrypted", path)
		}
		return nil, fmt.Errorf("host key %s is corrupt or not an SSH private key (restore it from a backup, or delete it to generate a new one, which clients will see as a changed host key): %w",
			path, err)
	}
	if typ := signer.PublicKey().Type(); !strings.HasPrefix(typ, sp.wantType) {
		return nil, fmt.Errorf("host key %s holds a %s key, want %s", path, typ, sp.wantType)
	}
	return signer, nil
}

// generate creates a new key and publishes it at path only if path does not
// exist yet. The file is complete and synced before it appears under its
// name, so a crash never leaves a truncated key behind; and publishing by
// link, which fails when the name is taken, lets exactly one of several
// racing callers win where rename would silently replace a key that
// another caller has already loaded.
func generate(path string, sp keySpec) error {
	key, err := sp.generate()
	if err != nil {
		return fmt.Errorf("generate %s host key: %w", sp.name, err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return fmt.Errorf("marshal %s host key: %w", sp.name, err)
	}
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), pem.EncodeToMemory(block), 0o600)
	if err != nil {
		return fmt.Errorf("write host key %s: %w", path, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write host key %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write host key %s: %w", path, err)
	}
	return nil
}

// writePub makes path hold the authorized_keys form of pub. The file is
// derived from the private key, so it is rewritten whenever it differs
// (missing, stale after a key was restored): a published fingerprint must
// match the key actually served.
func writePub(path string, pub ssh.PublicKey) error {
	want := ssh.MarshalAuthorizedKey(pub)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return nil
	}
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), want, 0o644)
	if err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	// Racing writers rename identical content, so last one wins harmlessly.
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	return nil
}
