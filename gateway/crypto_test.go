package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/store"
)

func TestSpeaksGCM(t *testing.T) {
	for id, want := range map[string]bool{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3": true,
		"SSH-2.0-OpenSSH_6.2":                    true,
		"SSH-2.0-OpenSSH_10.0":                   true,
		"SSH-2.0-OpenSSH_for_Windows_8.1":        true,
		"SSH-2.0-OpenSSH_8.2":                    true, // also what ssh-audit sends
		"SSH-2.0-PuTTY_Release_0.78":             true,
		"SSH-2.0-PuTTY_Release_0.83":             true,
		"SSH-2.0-OpenSSH_6.1p1":                  false,
		"SSH-2.0-OpenSSH_5.9":                    false,
		"SSH-2.0-PuTTY_Release_0.77":             false,
		"SSH-2.0-paramiko_2.12.0":                false,
		"SSH-2.0-Go":                             false,
		"SSH-2.0-WinSCP_release_6.1":             false,
		"SSH-2.0-libssh_0.10.4":                  false,
		"SSH-1.99-OpenSSH_9.2":                   false,
		"SSH-2.0-OpenSSH_":                       false,
		"SSH-2.0-OpenSSH_x.y":                    false,
		"SSH-2.0-OpenSSH_9":                      false,
		"OpenSSH_9.2":                            false,
		"":                                       false,
	} {
		if got := speaksGCM(id); got != want {
			t.Errorf("speaksGCM(%q) = %v, want %v", id, got, want)
		}
	}
}

// testUsers accepts every key as alice's.
type testUsers struct{}

func (testUsers) UserByKey(context.Context, string) (store.User, store.Key, error) {
	return store.User{Name: "alice", UID: 1001, GID: 1001}, store.Key{}, nil
}

// testHostKeys are one key of each type, as an upgraded installation has
// them (ed25519, an old ECDSA key, RSA).
var testHostKeys = sync.OnceValue(func() []gossh.Signer {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	var out []gossh.Signer
	for _, k := range []any{ed, ec, rk} {
		s, err := gossh.NewSignerFromKey(k)
		if err != nil {
			panic(err)
		}
		out = append(out, s)
	}
	return out
})

// startAlgoServer serves opts on a loopback port with no session layer:
// enough for key exchange and authentication.
func startAlgoServer(t *testing.T, opts Options) string {
	t.Helper()
	if opts.HostSigners == nil {
		opts.HostSigners = testHostKeys()
	}
	srv, err := New(opts, testUsers{}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ln.Close() // in case Serve had not registered it yet
	})
	return ln.Addr().String()
}

// kexInit is the algorithm lists of a server's first key exchange message.
type kexInit struct {
	kex, hostKeys, ciphers, macs []string
}

// offered connects with the identification line id and returns the
// server's identification line and its KEXINIT, as a raw client sees them.
func offered(t *testing.T, addr, id string) (string, kexInit) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, id+"\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read server identification: %v", err)
	}
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatalf("read KEXINIT: %v", err)
	}
	pkt := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	if _, err := io.ReadFull(r, pkt); err != nil {
		t.Fatalf("read KEXINIT: %v", err)
	}
	if pkt[0] != 20 {
		t.Fatalf("first packet is message %d, want KEXINIT (20)", pkt[0])
	}
	p := pkt[17:] // message number, cookie
	var lists [][]string
	for range 10 {
		n := binary.BigEndian.Uint32(p)
		lists = append(lists, strings.Split(string(p[4:4+n]), ","))
		p = p[4+n:]
	}
	if !slices.Equal(lists[2], lists[3]) || !slices.Equal(lists[4], lists[5]) {
		t.Errorf("different algorithms per direction: %q", lists)
	}
	return strings.TrimRight(line, "\r\n"), kexInit{kex: lists[0], hostKeys: lists[1], ciphers: lists[2], macs: lists[4]}
}

// The offer depends on the client: OpenSSH (and VS Code, which runs it)
// and PuTTY get AES-GCM alone, since they would pick chacha20 or AES-CTR
// over it; every other client may also use AES-CTR.
func TestCiphersByClient(t *testing.T) {
	addr := startAlgoServer(t, Options{})
	gcm := []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	compat := append(slices.Clone(gcm), "aes128-ctr", "aes192-ctr", "aes256-ctr")
	for id, want := range map[string][]string{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3": gcm,
		"SSH-2.0-OpenSSH_8.2":                    gcm,
		"SSH-2.0-PuTTY_Release_0.78":             gcm,
		"SSH-2.0-paramiko_2.12.0":                compat,
		"SSH-2.0-Go":                             compat,
		"SSH-2.0-OpenSSH_5.3":                    compat,
	} {
		line, k := offered(t, addr, id)
		if line != "SSH-2.0-DS01-Gateway" {
			t.Errorf("%s: server identification %q", id, line)
		}
		if !slices.Equal(k.ciphers, want) {
			t.Errorf("%s: ciphers %q, want %q", id, k.ciphers, want)
		}
	}
}

// Nothing offered by default is what ssh-audit fails: NIST curves (kex and
// ECDSA host keys), SHA-1 (ssh-rsa signatures, hmac-sha1, group14-sha1),
// 96-bit MACs, CBC and arcfour. The ECDSA key on disk is not offered.
func TestDefaultOfferPassesAudit(t *testing.T) {
	addr := startAlgoServer(t, Options{})
	for _, id := range []string{"SSH-2.0-OpenSSH_8.2", "SSH-2.0-paramiko_2.12.0"} {
		_, k := offered(t, addr, id)
		all := slices.Concat(k.kex, k.hostKeys, k.ciphers, k.macs)
		for _, name := range all {
			for _, bad := range []string{"nistp", "ecdsa", "sha1", "-96", "cbc", "arcfour", "group1-", "group14-sha1"} {
				if strings.Contains(name, bad) {
					t.Errorf("%s: offered %s", id, name)
					break
				}
			}
			if name == "ssh-rsa" {
				t.Errorf("%s: offered ssh-rsa (SHA-1 signatures)", id)
			}
		}
		// x/crypto puts them in its own order; clients choose by theirs.
		if want := []string{"rsa-sha2-256", "rsa-sha2-512", "ssh-ed25519"}; !slices.Equal(slices.Sorted(slices.Values(k.hostKeys)), want) {
			t.Errorf("%s: host keys %q, want %q", id, k.hostKeys, want)
		}
		if want := []string{"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"}; !slices.Equal(k.macs, want) {
			t.Errorf("%s: MACs %q, want %q", id, k.macs, want)
		}
		for _, want := range []string{"mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512"} {
			if !slices.Contains(k.kex, want) {
				t.Errorf("%s: kex %q lacks %s", id, k.kex, want)
			}
		}
	}
}

// dial runs a full handshake and authentication with the x/crypto client
// claiming to be id, restricted to the given algorithms.
func dial(addr, id string, ciphers, hostKeys []string) error {
	_, signer, _ := ed25519.GenerateKey(rand.Reader)
	s, err := gossh.NewSignerFromKey(signer)
	if err != nil {
		return err
	}
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		Config:            gossh.Config{Ciphers: ciphers},
		User:              "p",
		Auth:              []gossh.AuthMethod{gossh.PublicKeys(s)},
		HostKeyCallback:   gossh.InsecureIgnoreHostKey(),
		HostKeyAlgorithms: hostKeys,
		ClientVersion:     id,
		Timeout:           10 * time.Second,
	})
	if err != nil {
		return err
	}
	return c.Close()
}

// The identification exchange the gateway does itself is invisible to the
// client: the key exchange (which signs both lines) and authentication
// complete, with the cipher the offer allows.
func TestHandshakeThroughHello(t *testing.T) {
	addr := startAlgoServer(t, Options{})
	for _, tc := range []struct {
		id       string
		ciphers  []string
		hostKeys []string
		ok       bool
	}{
		{"SSH-2.0-OpenSSH_9.2p1", []string{"aes128-gcm@openssh.com"}, nil, true},
		{"SSH-2.0-OpenSSH_9.2p1", []string{"aes256-gcm@openssh.com"}, []string{"rsa-sha2-512"}, true},
		{"SSH-2.0-OpenSSH_9.2p1", []string{"aes128-ctr"}, nil, false},
		{"SSH-2.0-OpenSSH_9.2p1", []string{"chacha20-poly1305@openssh.com"}, nil, false},
		{"SSH-2.0-paramiko_2.12.0", []string{"aes128-ctr"}, nil, true},
		{"SSH-2.0-paramiko_2.12.0", []string{"aes256-ctr"}, []string{"rsa-sha2-256"}, true},
		{"SSH-2.0-paramiko_2.12.0", []string{"aes128-gcm@openssh.com"}, nil, true},
		{"SSH-2.0-Go", nil, []string{"ssh-rsa"}, false},
		{"SSH-2.0-Go", nil, []string{"ecdsa-sha2-nistp256"}, false},
	} {
		err := dial(addr, tc.id, tc.ciphers, tc.hostKeys)
		if (err == nil) != tc.ok {
			t.Errorf("%s with %v %v: err %v, want success %v", tc.id, tc.ciphers, tc.hostKeys, err, tc.ok)
		}
	}
}

// A client that waits for the server's line before sending its own (as
// some do, against RFC 4253) still gets it.
func TestServerSpeaksFirst(t *testing.T) {
	addr := startAlgoServer(t, Options{})
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "SSH-2.0-DS01-Gateway\r\n" {
		t.Fatalf("server identification %q, %v", line, err)
	}
}

// By default the keys there are are offered: an installation without an
// RSA key offers ed25519 alone.
func TestDefaultHostKeysOfferWhatExists(t *testing.T) {
	addr := startAlgoServer(t, Options{HostSigners: testHostKeys()[:1]})
	if _, k := offered(t, addr, "SSH-2.0-Go"); !slices.Equal(k.hostKeys, []string{"ssh-ed25519"}) {
		t.Errorf("host keys %q", k.hostKeys)
	}
}

// An admin's ciphers apply to every client as they are; the other lists
// too, and a listed ECDSA algorithm offers the ECDSA key again.
func TestConfiguredAlgorithms(t *testing.T) {
	addr := startAlgoServer(t, Options{
		Ciphers:           []string{"chacha20-poly1305@openssh.com", "aes128-ctr"},
		MACs:              []string{"hmac-sha2-512-etm@openssh.com"},
		KeyExchanges:      []string{"curve25519-sha256"},
		HostKeyAlgorithms: []string{"ssh-ed25519", "ecdsa-sha2-nistp256"},
	})
	for _, id := range []string{"SSH-2.0-OpenSSH_9.2p1", "SSH-2.0-paramiko_2.12.0"} {
		_, k := offered(t, addr, id)
		if want := []string{"chacha20-poly1305@openssh.com", "aes128-ctr"}; !slices.Equal(k.ciphers, want) {
			t.Errorf("%s: ciphers %q, want %q", id, k.ciphers, want)
		}
		if want := []string{"hmac-sha2-512-etm@openssh.com"}; !slices.Equal(k.macs, want) {
			t.Errorf("%s: MACs %q, want %q", id, k.macs, want)
		}
		if !slices.Contains(k.kex, "curve25519-sha256") || slices.Contains(k.kex, "mlkem768x25519-sha256") {
			t.Errorf("%s: kex %q", id, k.kex)
		}
		if want := []string{"ecdsa-sha2-nistp256", "ssh-ed25519"}; !slices.Equal(slices.Sorted(slices.Values(k.hostKeys)), want) {
			t.Errorf("%s: host keys %q, want %q", id, k.hostKeys, want)
		}
	}
	if err := dial(addr, "SSH-2.0-OpenSSH_9.2p1", []string{"chacha20-poly1305@openssh.com"}, []string{"ecdsa-sha2-nistp256"}); err != nil {
		t.Errorf("chacha20 with the ECDSA host key: %v", err)
	}
}

func TestAlgorithmOptionsRefused(t *testing.T) {
	onlyED := testHostKeys()[:1]
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Ciphers: []string{"aes128-cbc"}}, `ciphers[0]: unknown cipher "aes128-cbc"`},
		{Options{MACs: []string{"hmac-sha2-256", "hmac-sha1-96"}}, `macs[1]: unknown mac "hmac-sha1-96"`},
		{Options{KeyExchanges: []string{"diffie-hellman-group1-sha1"}}, "kex_algorithms[0]: unknown kex algorithm"},
		{Options{HostKeyAlgorithms: []string{"ssh-rsa"}}, `host_key_algorithms[0]: unknown host key algorithm "ssh-rsa"`},
		{Options{HostSigners: onlyED, HostKeyAlgorithms: []string{"ssh-ed25519", "ecdsa-sha2-nistp256"}},
			"host_key_algorithms: ecdsa-sha2-nistp256: no ecdsa-sha2-nistp256 host key"},
		{Options{HostSigners: testHostKeys()[1:2]}, "host_key_algorithms: no host key to offer"},
	} {
		if tc.opts.HostSigners == nil {
			tc.opts.HostSigners = testHostKeys()
		}
		_, err := New(tc.opts, testUsers{}, nil, nil, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.opts, err, tc.want)
		}
	}
}
