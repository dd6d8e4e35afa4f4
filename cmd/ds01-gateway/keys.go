package main

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/ds01/ds01-gateway/commands"
	"github.com/ds01/ds01-gateway/hostusers"
	"github.com/ds01/ds01-gateway/store"
)

// storeKeys serves key-list, key-add and key-remove from the store
// (users_from: store); every change is an event.
type storeKeys struct{ st *store.Store }

func (s storeKeys) OwnKeys(ctx context.Context, u store.User) ([]commands.KeyInfo, error) {
	ks, err := s.st.ListKeys(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	out := make([]commands.KeyInfo, 0, len(ks))
	for _, k := range ks {
		out = append(out, commands.KeyInfo{Fingerprint: k.Fingerprint, Type: k.Type, Comment: k.Comment,
			Added: k.CreatedAt, AddedVia: k.AddedVia, AddedFrom: k.AddedFrom})
	}
	return out, nil
}

func (s storeKeys) AddOwnKey(ctx context.Context, u store.User, k store.Key, from string) error {
	k.AddedFrom = from
	if err := s.st.AddOwnKey(ctx, u.Name, k); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return commands.ErrKeyInUse
		}
		return err
	}
	s.event(ctx, "key.add", u, k.Fingerprint, k.Type, from)
	return nil
}

func (s storeKeys) RemoveOwnKey(ctx context.Context, u store.User, fp, from string) (commands.KeyInfo, error) {
	k, err := s.st.RemoveOwnKey(ctx, u.Name, fp)
	if err != nil {
		return commands.KeyInfo{}, err
	}
	s.event(ctx, "key.remove", u, k.Fingerprint, k.Type, from)
	return commands.KeyInfo{Fingerprint: k.Fingerprint, Type: k.Type, Comment: k.Comment}, nil
}

func (s storeKeys) event(ctx context.Context, typ string, u store.User, fp, keyType, from string) {
	d, _ := json.Marshal(map[string]string{"fingerprint": fp, "type": keyType, "from": from})
	// The key change is done; a failed record must not undo it.
	_ = s.st.AddEvent(context.WithoutCancel(ctx), store.Event{Type: typ, User: u.Name, Details: string(d)})
}

// hostKeys serves the key commands in host accounts mode: the keys are
// the user's authorized_keys, which only they edit.
type hostKeys struct{ d *hostusers.Directory }

func (h hostKeys) OwnKeys(_ context.Context, u store.User) ([]commands.KeyInfo, error) {
	es, _, err := h.d.Keys(u.Name)
	if err != nil {
		return nil, err
	}
	out := make([]commands.KeyInfo, 0, len(es))
	for _, e := range es {
		out = append(out, commands.KeyInfo{Fingerprint: e.Fingerprint, Type: e.Key.Type(), Comment: e.Comment,
			AddedVia: "authorized_keys", Options: e.Options.String()})
	}
	return out, nil
}

func (hostKeys) AddOwnKey(context.Context, store.User, store.Key, string) error {
	return hostusers.ErrHostKeys
}

func (hostKeys) RemoveOwnKey(context.Context, store.User, string, string) (commands.KeyInfo, error) {
	return commands.KeyInfo{}, hostusers.ErrHostKeys
}
