package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// serverVersion is the software part of the gateway's identification line.
const serverVersion = "DS01-Gateway"

// The defaults pass Debian's ssh-audit with no failure: no NIST curves, no
// SHA-1, no 96-bit MACs, no ECDSA host key; and Paramiko 2.12, PuTTY 0.78,
// OpenSSH since 6.5 (so VS Code) and x/crypto all find a common algorithm
// in each list.
var (
	// gcmCiphers is the offer to clients known to speak AES-GCM (see
	// speaksGCM). SSH takes the first cipher of the *client's* list that the
	// server offers, and OpenSSH lists chacha20 and AES-CTR before GCM: were
	// those offered, every OpenSSH and VS Code connection would leave GCM,
	// the fastest cipher on CPUs with AES instructions (CTR with its HMAC
	// costs a third more time per byte here, chacha20 more: README, Ciphers).
	gcmCiphers = []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}
	// compatCiphers is the offer to every other client: GCM first for those
	// that take the server's hint, then AES-CTR for those without GCM, such
	// as Paramiko. chacha20 is left out: a client that has it has GCM or CTR
	// too, and both are faster here.
	compatCiphers = []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM,
		gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR}
	// DefaultMACs only matter with AES-CTR (GCM authenticates itself):
	// encrypt-then-MAC with SHA-2, which Paramiko 2.12 and PuTTY speak.
	DefaultMACs = []string{gossh.HMACSHA256ETM, gossh.HMACSHA512ETM}
	// DefaultKeyExchanges: the post-quantum hybrid newer OpenSSH prefers,
	// curve25519 (x/crypto adds its @libssh.org alias) for everyone else,
	// and a 4096-bit finite-field group for clients without curve25519.
	DefaultKeyExchanges = []string{gossh.KeyExchangeMLKEM768X25519, gossh.KeyExchangeCurve25519, gossh.KeyExchangeDH16SHA512}
	// DefaultHostKeyAlgorithms: ed25519, and the RSA key with SHA-2
	// signatures only. An ECDSA key (NIST curve) that an older installation
	// generated stays on disk, unused unless listed in host_key_algorithms.
	DefaultHostKeyAlgorithms = []string{gossh.KeyAlgoED25519, gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256}
)

// hostKeyFormats maps the host key algorithms one can choose to the key
// type that signs with them.
var hostKeyFormats = map[string]string{
	gossh.KeyAlgoED25519:   gossh.KeyAlgoED25519,
	gossh.KeyAlgoRSASHA512: gossh.KeyAlgoRSA,
	gossh.KeyAlgoRSASHA256: gossh.KeyAlgoRSA,
	gossh.KeyAlgoECDSA256:  gossh.KeyAlgoECDSA256,
	gossh.KeyAlgoECDSA384:  gossh.KeyAlgoECDSA384,
	gossh.KeyAlgoECDSA521:  gossh.KeyAlgoECDSA521,
}

// CheckAlgorithms validates one algorithm option of the configuration
// (ciphers, macs, kex_algorithms, host_key_algorithms): every name must be
// one x/crypto implements without known weakness, so SHA-1 and CBC modes
// cannot be switched back on by a typo-level edit.
func CheckAlgorithms(option string, names []string) error {
	var known []string
	supported := gossh.SupportedAlgorithms()
	switch option {
	case "ciphers":
		known = supported.Ciphers
	case "macs":
		known = supported.MACs
	case "kex_algorithms":
		known = supported.KeyExchanges
	case "host_key_algorithms":
		for algo := range hostKeyFormats {
			known = append(known, algo)
		}
		slices.Sort(known)
	default:
		return fmt.Errorf("%s: not an algorithm option", option)
	}
	for i, name := range names {
		if !slices.Contains(known, name) {
			return fmt.Errorf("%s[%d]: unknown %s %q; supported: %s",
				option, i, strings.TrimSuffix(strings.ReplaceAll(option, "_", " "), "s"), name, strings.Join(known, ", "))
		}
	}
	return nil
}

// algorithms is what the server offers, decided once at start.
type algorithms struct {
	ciphers  []string // the admin's choice; nil means by client software
	macs     []string
	kex      []string
	hostKeys []gossh.Signer // restricted to their chosen algorithms
}

func newAlgorithms(opts Options) (*algorithms, error) {
	a := &algorithms{ciphers: opts.Ciphers, macs: opts.MACs, kex: opts.KeyExchanges}
	for _, o := range []struct {
		name  string
		names []string
	}{{"ciphers", opts.Ciphers}, {"macs", opts.MACs}, {"kex_algorithms", opts.KeyExchanges}, {"host_key_algorithms", opts.HostKeyAlgorithms}} {
		if err := CheckAlgorithms(o.name, o.names); err != nil {
			return nil, err
		}
	}
	if len(a.ciphers) == 0 {
		a.ciphers = nil
	}
	if len(a.macs) == 0 {
		a.macs = DefaultMACs
	}
	if len(a.kex) == 0 {
		a.kex = DefaultKeyExchanges
	}
	algos, chosen := opts.HostKeyAlgorithms, len(opts.HostKeyAlgorithms) > 0
	if !chosen {
		algos = DefaultHostKeyAlgorithms
	}
	var err error
	if a.hostKeys, err = offeredHostKeys(opts.HostSigners, algos, chosen); err != nil {
		return nil, err
	}
	return a, nil
}

// offeredHostKeys restricts each signer to the algorithms of its type in
// algos and leaves out keys with none: x/crypto would otherwise offer an
// RSA key with SHA-1 signatures (ssh-rsa) and every key it is given. When
// the admin chose the algorithms (strict), each needs a key.
func offeredHostKeys(signers []gossh.Signer, algos []string, strict bool) ([]gossh.Signer, error) {
	var out []gossh.Signer
	served := map[string]bool{}
	for _, s := range signers {
		typ := s.PublicKey().Type()
		var mine []string
		for _, algo := range algos {
			if hostKeyFormats[algo] == typ {
				mine = append(mine, algo)
			}
		}
		if len(mine) == 0 {
			continue
		}
		as, ok := s.(gossh.AlgorithmSigner)
		if !ok {
			return nil, fmt.Errorf("host key %s cannot choose its signature algorithm", typ)
		}
		ms, err := gossh.NewSignerWithAlgorithms(as, mine)
		if err != nil {
			return nil, fmt.Errorf("host key %s: %w", typ, err)
		}
		out = append(out, ms)
		for _, algo := range mine {
			served[algo] = true
		}
	}
	for _, algo := range algos {
		if strict && !served[algo] {
			typ := hostKeyFormats[algo]
			file := strings.TrimPrefix(typ, "ssh-")
			if strings.HasPrefix(typ, "ecdsa-") {
				file = "ecdsa"
			}
			return nil, fmt.Errorf("host_key_algorithms: %s: no %s host key in data_dir (ssh_host_%s_key)", algo, typ, file)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("host_key_algorithms: no host key to offer")
	}
	return out, nil
}

// ctxKeyGCM marks a connection whose client is known to speak AES-GCM.
type ctxKeyGCM struct{}

// config is the algorithm part of a connection's server configuration.
func (a *algorithms) config(ctx gssh.Context) gossh.Config {
	c := gossh.Config{Ciphers: a.ciphers, MACs: a.macs, KeyExchanges: a.kex}
	if c.Ciphers == nil {
		c.Ciphers = compatCiphers
		if gcm, _ := ctx.Value(ctxKeyGCM{}).(bool); gcm {
			c.Ciphers = gcmCiphers
		}
	}
	return c
}

// connCallback runs next, then, when the ciphers depend on the client, does
// the identification exchange itself (see readHello) so that the server
// configuration, built after this callback, can depend on the client's
// software.
func (a *algorithms) connCallback(next gssh.ConnCallback) gssh.ConnCallback {
	if a.ciphers != nil {
		return next
	}
	return func(ctx gssh.Context, conn net.Conn) net.Conn {
		if next != nil {
			if conn = next(ctx, conn); conn == nil {
				return nil
			}
		}
		hc, id := readHello(conn, "SSH-2.0-"+serverVersion)
		ctx.SetValue(ctxKeyGCM{}, speaksGCM(id))
		return hc
	}
}

// maxHello bounds what readHello reads: RFC 4253 limits the identification
// line to 255 bytes with its CR LF.
const maxHello = 256

// readHello sends the server's identification line and reads the client's
// (both sides send theirs at once, so no client waits for the other). It
// returns a connection on which x/crypto performs the same exchange again:
// its identical line is dropped instead of sent twice, and the bytes read
// here are handed back first, so its session hash covers exactly the bytes
// on the wire and its own limits and checks apply. A client that tampers
// with or replays the line gains nothing: the key exchange signs both
// lines, and the choice is only between two sets both considered safe. On
// any error the connection is returned as is and x/crypto fails on it,
// which ends the connection the usual way.
func readHello(conn net.Conn, ours string) (net.Conn, string) {
	hc := &helloConn{Conn: conn, sent: []byte(ours + "\r\n")}
	if _, err := conn.Write(hc.sent); err != nil {
		return hc, ""
	}
	buf := make([]byte, 0, maxHello)
	for len(buf) < maxHello && bytes.IndexByte(buf, '\n') < 0 {
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	hc.replay = buf
	line, _, ok := bytes.Cut(buf, []byte("\n"))
	if !ok {
		return hc, ""
	}
	return hc, strings.TrimSuffix(string(line), "\r")
}

// helloConn is a connection whose identification exchange readHello did.
// Only x/crypto's handshake goroutine touches sent and replay before the
// exchange is over; the goroutines it starts afterwards see them emptied.
type helloConn struct {
	net.Conn
	sent   []byte // our identification line, already written
	replay []byte // read from the client, not yet passed on
}

func (c *helloConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *helloConn) Write(p []byte) (int, error) {
	if sent := c.sent; sent != nil {
		c.sent = nil
		if !bytes.Equal(p, sent) {
			return 0, fmt.Errorf("ssh identification %q already sent", bytes.TrimSpace(sent))
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// speaksGCM reports whether the client software named by an SSH
// identification line is known to implement aes*-gcm@openssh.com:
// OpenSSH since 6.2 (VS Code runs the local OpenSSH) and PuTTY since 0.78.
// Both prefer other ciphers when offered, so they get the GCM-only set.
// Unknown software gets the wider set; a client that claims to be OpenSSH
// but lacks GCM (an OpenSSH built without OpenSSL) fails to agree on a
// cipher, and the admin can set ciphers for it.
func speaksGCM(id string) bool {
	sw, ok := strings.CutPrefix(id, "SSH-2.0-")
	if !ok {
		return false
	}
	sw, _, _ = strings.Cut(sw, " ")
	if v, ok := strings.CutPrefix(sw, "OpenSSH_"); ok {
		return versionAtLeast(strings.TrimPrefix(v, "for_Windows_"), 6, 2)
	}
	if v, ok := strings.CutPrefix(sw, "PuTTY_Release_"); ok {
		return versionAtLeast(v, 0, 78)
	}
	return false
}

// versionAtLeast reports whether v starts with MAJOR.MINOR at least
// major.minor ("9.2p1", "0.78").
func versionAtLeast(v string, major, minor int) bool {
	majS, rest, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	maj, err1 := strconv.Atoi(majS)
	mnr, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || (maj == major && mnr >= minor)
}
