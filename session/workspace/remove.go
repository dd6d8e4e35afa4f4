package workspace

import "fmt"

// RemoveAll removes name below the directory, and all it holds, with the
// gateway's own rights (the user's files are the user's to lock, not to
// keep). Through the directory's os.Root: a symlink anywhere below is
// removed, never followed.
func (d *Dir) RemoveAll(name string) error {
	if err := d.root.RemoveAll(name); err != nil {
		return fmt.Errorf("remove %s/%s: %w", d.path, name, err)
	}
	return nil
}
