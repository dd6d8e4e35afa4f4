package commands

import (
	"bufio"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/store"
)

// Keys are the user's own SSH keys: the store's in store mode; in host
// accounts mode the user's ~/.ssh/authorized_keys, which only they edit
// (AddOwnKey and RemoveOwnKey refuse there).
type Keys interface {
	OwnKeys(ctx context.Context, u store.User) ([]KeyInfo, error)
	// AddOwnKey registers one authorized_keys line, already checked by
	// ParseNewKey; from is the client's address, for the record.
	AddOwnKey(ctx context.Context, u store.User, k store.Key, from string) error
	RemoveOwnKey(ctx context.Context, u store.User, fingerprint, from string) (KeyInfo, error)
}

// KeyInfo is a key as key-list shows it.
type KeyInfo struct {
	Fingerprint string
	Type        string
	Comment     string
	Added       time.Time // zero when unknown (authorized_keys)
	AddedVia    string    // "admin", "key-add", "authorized_keys"
	AddedFrom   string
	Options     string // authorized_keys options (host accounts mode)
}

// maxKeyLine bounds key-add's input: an RSA key of 16384 bits is ~2.8 KB.
const maxKeyLine = 8 << 10

// ErrKeyInUse is key-add's answer for a key already registered to
// anyone: it says no more, so key-add cannot be used to learn who holds
// a public key.
var ErrKeyInUse = errors.New("this key is already registered; generate a new one (ssh-keygen -t ed25519)")

// ParseNewKey checks a key-add line: one public key of a type the
// gateway accepts, no options (they would be ignored in store mode), RSA
// of at least 2048 bits.
func ParseNewKey(line string) (store.Key, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return store.Key{}, usagef("give the public key on stdin: ssh HOST key-add < ~/.ssh/id_ed25519.pub")
	}
	pk, comment, opts, rest, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return store.Key{}, usagef("not a public key line (want e.g. the contents of ~/.ssh/id_ed25519.pub)")
	}
	if len(opts) > 0 {
		return store.Key{}, usagef("options (%s) are not accepted: give the key alone", strings.Join(opts, ","))
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return store.Key{}, usagef("give one key only")
	}
	switch pk.Type() {
	case gossh.KeyAlgoED25519, gossh.KeyAlgoECDSA256, gossh.KeyAlgoECDSA384, gossh.KeyAlgoECDSA521,
		gossh.KeyAlgoSKED25519, gossh.KeyAlgoSKECDSA256:
	case gossh.KeyAlgoRSA:
		if cpk, ok := pk.(gossh.CryptoPublicKey); ok {
			if r, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok && r.N.BitLen() < 2048 {
				return store.Key{}, usagef("RSA key of %d bits: use at least 2048, or ed25519", r.N.BitLen())
			}
		}
	default:
		return store.Key{}, usagef("key type %s is not accepted: use ed25519, ECDSA or RSA", pk.Type())
	}
	return store.Key{AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))), Comment: comment,
		Fingerprint: gossh.FingerprintSHA256(pk), Type: pk.Type()}, nil
}

// readKeyLine reads key-add's one line from stdin, bounded.
func readKeyLine(r io.Reader) (string, error) {
	if r == nil {
		return "", usagef("give the public key on stdin: ssh HOST key-add < ~/.ssh/id_ed25519.pub")
	}
	br := bufio.NewReaderSize(io.LimitReader(r, maxKeyLine+1), 512)
	var b strings.Builder
	for b.Len() <= maxKeyLine {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if strings.TrimSpace(b.String()) != "" && (strings.HasSuffix(line, "\n") || err != nil) {
			break
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	if b.Len() > maxKeyLine {
		return "", usagef("input longer than %d bytes: give one public key line", maxKeyLine)
	}
	return b.String(), nil
}

func keyList() *command {
	return &command{
		name: "key-list", aliases: []string{"keys"}, flags: []flagSpec{formatFlag},
		summary: "List your SSH keys; * marks the one this connection used.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			ks, err := env.Service.OwnKeys(ctx, env.User)
			if err != nil {
				return err
			}
			if isJSON(p) {
				type keyJSON struct {
					Fingerprint string `json:"fingerprint"`
					Type        string `json:"type"`
					Comment     string `json:"comment"`
					Added       string `json:"added,omitempty"`
					AddedVia    string `json:"added_via"`
					AddedFrom   string `json:"added_from,omitempty"`
					Options     string `json:"options,omitempty"`
					Current     bool   `json:"current"`
				}
				return writeJSONList(env.Stdout, ks, func(k KeyInfo) keyJSON {
					j := keyJSON{Fingerprint: k.Fingerprint, Type: k.Type, Comment: k.Comment, AddedVia: k.AddedVia,
						AddedFrom: k.AddedFrom, Options: k.Options, Current: k.Fingerprint == env.KeyFingerprint}
					if !k.Added.IsZero() {
						j.Added = k.Added.UTC().Format(time.RFC3339)
					}
					return j
				})
			}
			tw := table(env.Stdout)
			fmt.Fprintln(tw, "\tFINGERPRINT\tTYPE\tCOMMENT\tADDED\tBY\tOPTIONS")
			for _, k := range ks {
				mark := ""
				if k.Fingerprint == env.KeyFingerprint {
					mark = "*"
				}
				by := k.AddedVia
				if k.AddedFrom != "" {
					by += " from " + k.AddedFrom
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, k.Fingerprint, k.Type, orDashStr(k.Comment), when(k.Added), by, orDashStr(k.Options))
			}
			return tw.Flush()
		},
	}
}

func orDashStr(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func keyAdd() *command {
	return &command{
		name: "key-add", maxArgs: 0,
		summary: "Add an SSH key to your account: ssh HOST key-add < id.pub (one public key line on stdin).",
		run: func(ctx context.Context, env *Env, _ *parsed) error {
			line, err := readKeyLine(env.Stdin)
			if err != nil {
				return err
			}
			k, err := ParseNewKey(line)
			if err != nil {
				return err
			}
			if err := env.Service.AddOwnKey(ctx, env.User, k, env.Remote); err != nil {
				return err
			}
			env.notef("key %s (%s) added; your other keys will be told at their next login", k.Fingerprint, k.Type)
			return nil
		},
	}
}

func keyRemove() *command {
	return &command{
		name: "key-remove", args: "<fingerprint>", minArgs: 1, maxArgs: 1,
		summary: "Remove one of your SSH keys by its SHA256 fingerprint (key-list shows them); never the last one.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			fp := p.args[0]
			if !strings.HasPrefix(fp, "SHA256:") || len(fp) > 100 {
				return usagef("want a fingerprint like SHA256:abc... (see %s)", env.hint("key-list"))
			}
			k, err := env.Service.RemoveOwnKey(ctx, env.User, fp, env.Remote)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return fmt.Errorf("you have no key %s (see %s)", fp, env.hint("key-list"))
			case errors.Is(err, store.ErrLastKey):
				return fmt.Errorf("%s is your only key: add another first (%s < id.pub), then remove this one", fp, env.hint("key-add"))
			case err != nil:
				return err
			}
			msg := fmt.Sprintf("key %s (%s) removed", k.Fingerprint, k.Type)
			if k.Fingerprint == env.KeyFingerprint {
				msg += "; this connection used it: the next login needs another key"
			}
			env.notef("%s", msg)
			return nil
		},
	}
}
