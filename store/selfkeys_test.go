package store

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testKey(t *testing.T) string {
	line, _ := newKey(t, "")
	return line
}

func fpOf(t *testing.T, line string) string {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(pk)
}

func TestSelfServiceKeys(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	k1, k2, k3 := testKey(t), testKey(t), testKey(t)
	if err := s.AddUser(ctx, User{Name: "alice", UID: 1001, GID: 1001}, []Key{{AuthorizedKey: k1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, User{Name: "bob", UID: 1002, GID: 1002}, []Key{{AuthorizedKey: k3}}); err != nil {
		t.Fatal(err)
	}
	ks, err := s.ListKeys(ctx, "alice")
	if err != nil || ks[0].AddedVia != "admin" || ks[0].Notice != "" {
		t.Fatalf("admin key: %+v, %v", ks, err)
	}
	if err := s.AddOwnKey(ctx, "alice", Key{AuthorizedKey: k2, AddedFrom: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddOwnKey(ctx, "alice", Key{AuthorizedKey: k3}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("bob's key added to alice: %v", err)
	}
	_, old, _ := s.UserByKey(ctx, fpOf(t, k1))
	if old.Notice != fpOf(t, k2) {
		t.Fatalf("old key's notice = %q, want the new key", old.Notice)
	}
	ks, _ = s.ListKeys(ctx, "alice")
	if nk := ks[1]; nk.Fingerprint != fpOf(t, k2) || nk.Notice != "" || nk.AddedVia != AddedViaKeyAdd || nk.AddedFrom != "192.0.2.7" {
		t.Errorf("new key: %+v", ks)
	}
	if _, n, _ := s.UserByKey(ctx, fpOf(t, k3)); n.Notice != "" {
		t.Errorf("another user's key got a notice")
	}
	// Shown once.
	newer, ok, err := s.TakeKeyNotice(ctx, fpOf(t, k1))
	if err != nil || !ok || newer.Fingerprint != fpOf(t, k2) || newer.AddedFrom != "192.0.2.7" {
		t.Fatalf("take notice: %+v %v %v", newer, ok, err)
	}
	if _, ok, _ := s.TakeKeyNotice(ctx, fpOf(t, k1)); ok {
		t.Error("notice shown twice")
	}

	if _, err := s.RemoveOwnKey(ctx, "alice", fpOf(t, k3)); !errors.Is(err, ErrNotFound) {
		t.Errorf("alice removed bob's key: %v", err)
	}
	if _, err := s.RemoveOwnKey(ctx, "bob", fpOf(t, k3)); !errors.Is(err, ErrLastKey) {
		t.Errorf("last key: %v", err)
	}
	// A removed new key takes its pending notices with it.
	if err := s.AddOwnKey(ctx, "bob", Key{AuthorizedKey: testKey(t)}); err != nil {
		t.Fatal(err)
	}
	ks, _ = s.ListKeys(ctx, "bob")
	if _, err := s.RemoveOwnKey(ctx, "bob", ks[1].Fingerprint); err != nil {
		t.Fatal(err)
	}
	if _, k, _ := s.UserByKey(ctx, fpOf(t, k3)); k.Notice != "" {
		t.Errorf("notice of a removed key left: %q", k.Notice)
	}
}

func TestUpsertUser(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if u, ch, err := s.UpsertUser(ctx, User{Name: "hal", UID: 1500, GID: 1500, Group: "hal"}); err != nil || !ch || u.Group != "hal" || u.CreatedAt.IsZero() {
		t.Fatalf("insert: %+v %v %v", u, ch, err)
	}
	if _, ch, err := s.UpsertUser(ctx, User{Name: "hal", UID: 1500, GID: 1500, Group: "hal"}); err != nil || ch {
		t.Fatalf("same again: %v %v", ch, err)
	}
	if u, ch, err := s.UpsertUser(ctx, User{Name: "hal", UID: 1501, GID: 100, Group: "users"}); err != nil || !ch || u.UID != 1501 || u.GID != 100 || u.Group != "hal" {
		t.Fatalf("update: %+v %v %v", u, ch, err)
	}
	if u, _ := s.GetUser(ctx, "hal"); u.UID != 1501 || u.GID != 100 || u.Group != "hal" {
		t.Errorf("after update: %+v (the recorded group stays)", u)
	}
	if _, _, err := s.UpsertUser(ctx, User{Name: "other", UID: 1501, GID: 1501}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("uid taken: %v", err)
	}
	// An account the admin added without a group gets the primary group.
	if err := s.AddUser(ctx, User{Name: "ida", UID: 1600, GID: 1600}, nil); err != nil {
		t.Fatal(err)
	}
	if u, ch, err := s.UpsertUser(ctx, User{Name: "ida", UID: 1600, GID: 1600, Group: "ida"}); err != nil || !ch || u.Group != "ida" {
		t.Errorf("group filled in: %+v %v %v", u, ch, err)
	}
}
