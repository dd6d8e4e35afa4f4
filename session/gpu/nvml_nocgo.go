//go:build !cgo

package gpu

import (
	"errors"
	"io"
)

// NVML is a C library: a binary built with CGO_ENABLED=0 cannot load it.
var errNoCgo = errors.New("this binary was built without cgo (CGO_ENABLED=0), so it cannot use NVML: rebuild with cgo, or use fake GPUs")

// NewNVML cannot reach the driver without cgo.
func NewNVML() (Inventory, error) { return nil, errNoCgo }

// Describe cannot reach the driver without cgo.
func Describe(io.Writer) error { return errNoCgo }
