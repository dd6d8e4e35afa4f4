package kube

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// fwdState is what the forwards and the sampler keep between calls. Its
// zero value is ready.
type fwdState struct {
	image atomic.Pointer[string]     // the helper image pods run; see PrepareHelper
	prep  atomic.Pointer[helperPrep] // StartHelper's preparation, awaited by Launch

	mu    sync.Mutex
	pf    map[string]*pfConn    // pod -> its port-forward connection
	nodes map[string]string     // pod -> the node it runs on
	stats map[string]*nodeStats // node -> its recent stats summary

	// Tests replace these.
	now        func() time.Time
	fetchStats func(ctx context.Context, node string) ([]byte, error)
}

func (f *fwdState) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}
