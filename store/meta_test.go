package store

import (
	"encoding/hex"
	"sync"
	"testing"
)

func TestInstanceID(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()

	// Concurrent first calls through two handles must agree.
	other, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range ids {
		st := s
		if i%2 == 1 {
			st = other
		}
		wg.Go(func() { ids[i], errs[i] = st.InstanceID(ctx) })
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("InstanceID differs: %v", ids)
		}
	}
	id := ids[0]
	if len(id) != 16 {
		t.Errorf("InstanceID %q: length %d, want 16", id, len(id))
	}
	if _, err := hex.DecodeString(id); err != nil {
		t.Errorf("InstanceID %q not hex: %v", id, err)
	}

	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if got, err := reopened.InstanceID(ctx); err != nil || got != id {
		t.Errorf("after reopen InstanceID = %q, %v; want %q", got, err, id)
	}
}
