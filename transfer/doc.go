// Package transfer serves file transfers (SFTP, and the legacy scp
// protocol that `scp -O` execs) on a project's workspace without any
// container.
//
// The gateway runs as root, so it never serves files itself: Spawn
// re-executes the gateway binary as the user (ChildMain), so the kernel
// checks every permission as that user and new files belong to them, and
// a crash of the child cannot take the gateway down. Inside the child every
// path goes through an os.Root opened at the mount's host directory, so
// "..", absolute paths and symlinks planted in the workspace cannot reach
// anything outside it.
package transfer
