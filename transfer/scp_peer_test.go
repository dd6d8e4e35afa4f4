package transfer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scpPeer plays the client's side of the legacy scp protocol against
// ServeSCP, one step at a time, as OpenSSH's scp would.
type scpPeer struct {
	t    *testing.T
	w    *io.PipeWriter
	r    *bufio.Reader
	done chan scpResult
}

type scpResult struct {
	st     Stats
	status int
	err    error
}

func startSCP(t *testing.T, mounts []Mount, args ...string) *scpPeer {
	t.Helper()
	return startPeer(t, func(in io.Reader, out io.Writer) scpResult {
		st, status, err := ServeSCP(context.Background(), mounts, args, in, out)
		return scpResult{st, status, err}
	})
}

// startPeer connects a peer to serve, which runs the server side.
func startPeer(t *testing.T, serve func(in io.Reader, out io.Writer) scpResult) *scpPeer {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &scpPeer{t: t, w: inW, r: bufio.NewReader(outR), done: make(chan scpResult, 1)}
	go func() {
		r := serve(inR, outW)
		outW.Close()
		inR.Close()
		p.done <- r
	}()
	t.Cleanup(func() {
		inW.Close()
		outR.Close()
	})
	return p
}

func (p *scpPeer) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.w, s); err != nil {
		p.t.Fatalf("send %q: %v", s, err)
	}
}

// status reads one response: "" for an ack, else the error line with its
// leading \x01 or \x02.
func (p *scpPeer) status() string {
	p.t.Helper()
	b, err := p.r.ReadByte()
	if err != nil {
		p.t.Fatalf("read status: %v", err)
	}
	if b == 0 {
		return ""
	}
	line, _ := p.r.ReadString('\n')
	return string(b) + strings.TrimSuffix(line, "\n")
}

func (p *scpPeer) ack() {
	p.t.Helper()
	if s := p.status(); s != "" {
		p.t.Fatalf("want ack, got %q", s)
	}
}

// putFile sends one C record and its data, as scp's source does.
func (p *scpPeer) putFile(mode uint32, name string, data []byte, mtime int64) {
	p.t.Helper()
	if mtime != 0 {
		p.send(fmt.Sprintf("T%d 0 %d 0\n", mtime, mtime))
		p.ack()
	}
	p.send(fmt.Sprintf("C%04o %d %s\n", mode, len(data), name))
	p.ack()
	p.send(string(data) + "\x00")
	p.ack()
}

// finish ends the client's side and returns the server's result.
func (p *scpPeer) finish() scpResult {
	p.t.Helper()
	p.w.Close()
	rest, _ := io.ReadAll(p.r)
	if len(rest) > 0 {
		p.t.Errorf("unread output: %q", rest)
	}
	select {
	case r := <-p.done:
		return r
	case <-time.After(10 * time.Second):
		p.t.Fatal("scp server did not end")
		return scpResult{}
	}
}

// got is what a sink received: files and directories by path.
type got struct {
	kind  byte // 'C' or 'D'
	mode  uint32
	data  string
	mtime int64
}

// receive plays scp's sink for an -f source: it starts the transfer and
// records everything, acking each record. Errors the source reports are
// returned in order.
func (p *scpPeer) receive() (map[string]got, []string) {
	p.t.Helper()
	tree := map[string]got{}
	var errs []string
	var dir []string
	var mtime int64
	p.send("\x00")
	for {
		b, err := p.r.ReadByte()
		if err == io.EOF {
			return tree, errs
		}
		if err != nil {
			p.t.Fatal(err)
		}
		line, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("record: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch b {
		case 1, 2:
			errs = append(errs, line)
			continue
		case 'T':
			f := strings.Fields(line)
			mtime, _ = strconv.ParseInt(f[0], 10, 64)
			p.send("\x00")
			continue
		case 'E':
			dir = dir[:len(dir)-1]
			p.send("\x00")
			continue
		}
		mode, size, name, err := parseRecord(string(b) + line)
		if err != nil {
			p.t.Fatalf("bad record %q: %v", line, err)
		}
		full := strings.Join(append(append([]string{}, dir...), name), "/")
		p.send("\x00")
		if b == 'D' {
			tree[full] = got{kind: 'D', mode: mode, mtime: mtime}
			dir = append(dir, name)
			mtime = 0
			continue
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(p.r, data); err != nil {
			p.t.Fatal(err)
		}
		if s := p.status(); s != "" {
			errs = append(errs, s)
		}
		tree[full] = got{kind: 'C', mode: mode, data: string(data), mtime: mtime}
		mtime = 0
		p.send("\x00")
	}
}
