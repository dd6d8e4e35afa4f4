package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/ds01/ds01-gateway/store"
)

// keyNotices is implemented by Users that record key-add (the store): the
// new-key notice is taken, once, by the first session of an older key.
type keyNotices interface {
	TakeKeyNotice(ctx context.Context, fingerprint string) (store.Key, bool, error)
}

// tellNewKey shows a login with an older key that the user added a key
// since, and how to remove it if that was not them. It runs only when the
// key's row (read by the auth lookup anyway) says a notice is pending.
func (s *Server) tellNewKey(ctx context.Context, log *slog.Logger, k store.Key, w io.Writer) {
	kn, ok := s.users.(keyNotices)
	if !ok {
		return
	}
	newer, ok, err := kn.TakeKeyNotice(ctx, k.Fingerprint)
	if err != nil {
		log.Error("new-key notice", "err", err)
		return
	}
	if !ok {
		return
	}
	from := ""
	if newer.AddedFrom != "" {
		from = " from " + newer.AddedFrom
	}
	fmt.Fprintf(w, "ds01: a new key %s was added on %s%s; if that was not you: ssh %s@%s key-remove %s\n",
		newer.Fingerprint, newer.CreatedAt.UTC().Format("Jan 2 15:04 UTC"), from, s.opts.CommandLogin, s.opts.PublicName, newer.Fingerprint)
}
