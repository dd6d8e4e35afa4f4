package hostkeys

import (
	"fmt"
	"os"
)

// writeTemp writes data to a new temporary file in dir, with mode perm,
// synced to disk, and returns its path. The caller links or renames it into
// place; being in the same directory keeps that on one filesystem.
func writeTemp(dir, base string, data []byte, perm os.FileMode) (string, error) {
	// CreateTemp opens with mode 0600, so a private key is never readable
	// by others, not even while being written.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		_ = f.Close()
		_ = os.Remove(name)
		return "", err
	}
	// Chmod, unlike a create mode, is not reduced by the umask.
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return "", err
	}
	return name, nil
}

// syncDir makes a new directory entry durable, so the key survives a power
// loss right after it was created.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
