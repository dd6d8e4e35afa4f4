// Package gpu finds the host's GPUs and hands them out. A slot is a full
// GPU or one MIG instance, and belongs to at most one container at a time.
package gpu

import (
	"context"
	"errors"
	"math"
	"strconv"
)

// migSlices is how many compute slices a whole GPU splits into under MIG:
// a slot's GPU-equivalents are counted in these sevenths.
const migSlices = 7

// eqEpsilon absorbs float error when a sum of sevenths meets a quota
// written as a decimal (3/7 + 4/7 need not be exactly 1.0).
const eqEpsilon = 1e-9

// Slot is one unit the allocator hands out: a full GPU or a MIG instance.
type Slot struct {
	UUID      string // "GPU-..." or "MIG-..."
	Index     string // "0" for GPU 0; "0:1" for MIG instance 1 of GPU 0
	Name      string // e.g. "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
	MemoryMiB uint64
	Slices    int    // MIG compute slices (1..7); 0 for a full GPU
	Parent    string // a MIG instance's GPU UUID; "" for a full GPU
}

// GPUEq is the slot's GPU-equivalents: 1.0 for a full GPU, Slices/7 for a
// MIG instance.
func (s Slot) GPUEq() float64 {
	return float64(s.sevenths()) / migSlices
}

// sevenths is GPUEq in whole sevenths, so that sums stay exact.
func (s Slot) sevenths() int {
	if s.Slices > 0 {
		return s.Slices
	}
	return migSlices
}

// Inventory lists the host's slots.
type Inventory interface {
	Slots(ctx context.Context) ([]Slot, error)
	// Utilization is the GPU's (or MIG parent's) utilisation in percent,
	// when the source knows it.
	Utilization(uuid string) (pct int, ok bool)
	// Real is true for devices Docker must pass through (nvidia device
	// requests); false for fake slots.
	Real() bool
	Close() error
}

// ErrNoNVML means the host has no NVIDIA driver: it serves without GPUs.
var ErrNoNVML = errors.New("no NVIDIA driver library (libnvidia-ml.so.1) on this host")

// RoundEq rounds a gpueq sum to 2 decimals for display and comparison.
// Sevenths do not add up exactly in floats: compare a quota with an
// epsilon of 1e-9 rather than with rounded values.
func RoundEq(eq float64) float64 {
	return math.Round(eq*100) / 100
}

// FormatEq writes gpueq for people: one decimal when that is exact
// (1.0, 2.0, 0.5), two otherwise (a 2g MIG instance is 0.29).
func FormatEq(eq float64) string {
	eq = RoundEq(eq)
	if math.Abs(eq*10-math.Round(eq*10)) < 1e-9 {
		return strconv.FormatFloat(eq, 'f', 1, 64)
	}
	return strconv.FormatFloat(eq, 'f', 2, 64)
}
