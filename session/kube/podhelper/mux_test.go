package podhelper

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// pair is a helper-side and a gateway-side mux joined by pipes.
func pair(t *testing.T) (helper, gw *Mux) {
	t.Helper()
	hr, gw2h := io.Pipe()
	gr, h2gw := io.Pipe()
	helper = NewMux(hr, h2gw)
	gw = NewMux(gr, gw2h)
	t.Cleanup(func() { helper.Close(); gw.Close(); gw2h.Close(); h2gw.Close() })
	return helper, gw
}

func TestMuxReadyAndFail(t *testing.T) {
	h, g := pair(t)
	go h.Ready("127.0.0.1:4242")
	addr, err := g.WaitReady(time.After(5 * time.Second))
	if err != nil || addr != "127.0.0.1:4242" {
		t.Fatalf("ready = %q, %v", addr, err)
	}

	h, g = pair(t)
	go h.Fail("listen tcp 127.0.0.1:22: bind: permission denied")
	_, err = g.WaitReady(time.After(5 * time.Second))
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("fail = %v, want the helper's message", err)
	}
}

// Data crosses both ways, and a half-close reaches the other end while
// the reverse direction still flows.
func TestMuxConnHalfClose(t *testing.T) {
	h, g := pair(t)
	hc, err := h.Open("10.0.0.7:5555")
	if err != nil {
		t.Fatal(err)
	}
	gc, remote, err := g.Accept()
	if err != nil || remote != "10.0.0.7:5555" {
		t.Fatalf("accept = %q, %v", remote, err)
	}
	go func() {
		hc.Write([]byte("request"))
		hc.CloseWrite()
	}()
	got, err := io.ReadAll(gc)
	if err != nil || string(got) != "request" {
		t.Fatalf("gateway read %q, %v", got, err)
	}
	if _, err := gc.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	gc.Close()
	got, err = io.ReadAll(hc)
	if err != nil || string(got) != "reply" {
		t.Fatalf("helper read %q, %v", got, err)
	}
	if _, err := hc.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after the peer closed = %v, want ErrClosed", err)
	}
}

// More than a window of data arrives whole and in order.
func TestMuxBulk(t *testing.T) {
	h, g := pair(t)
	hc, _ := h.Open("a")
	gc, _, _ := g.Accept()
	data := make([]byte, 3*Window+12345)
	rand.Read(data)
	go func() {
		hc.Write(data)
		hc.CloseWrite()
	}()
	got, err := io.ReadAll(gc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want %d equal", len(got), err, len(data))
	}
}

// A connection nobody reads fills its window and then blocks its writer
// alone: another connection on the same mux still flows.
func TestMuxSlowConnDoesNotStallOthers(t *testing.T) {
	h, g := pair(t)
	slow, _ := h.Open("slow")
	_, _, _ = g.Accept() // never read
	fast, _ := h.Open("fast")
	gfast, _, _ := g.Accept()

	blocked := make(chan int, 1)
	go func() {
		n, _ := slow.Write(make([]byte, 2*Window))
		blocked <- n
	}()
	go func() {
		fast.Write([]byte("still flowing"))
		fast.CloseWrite()
	}()
	got, err := io.ReadAll(gfast)
	if err != nil || string(got) != "still flowing" {
		t.Fatalf("fast connection read %q, %v", got, err)
	}
	// Wait until the slow writer has spent its window.
	for deadline := time.Now().Add(5 * time.Second); ; {
		slow.mu.Lock()
		spent := slow.credit == 0
		slow.mu.Unlock()
		if spent || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case n := <-blocked:
		t.Fatalf("the slow writer wrote %d bytes past its window", n)
	case <-time.After(50 * time.Millisecond):
	}
	slow.Close() // unblocks the writer
	if n := <-blocked; n != Window {
		t.Errorf("slow writer wrote %d, want its window %d", n, Window)
	}
}

// When the stream under the mux ends (the exec ended), every connection
// and Accept end with it.
func TestMuxEndsConnections(t *testing.T) {
	hr, gw2h := io.Pipe()
	gr, h2gw := io.Pipe()
	h := NewMux(hr, h2gw)
	g := NewMux(gr, gw2h)
	hc, _ := h.Open("a")
	gc, _, _ := g.Accept()
	h2gw.Close() // the helper's output ends
	if _, err := io.ReadAll(gc); err != nil {
		t.Errorf("read after the end = %v, want EOF", err)
	}
	if _, err := gc.Write([]byte("x")); err == nil {
		t.Error("write after the end succeeded")
	}
	if _, _, err := g.Accept(); err == nil {
		t.Error("accept after the end succeeded")
	}
	h.Close()
	hc.Close()
	gw2h.Close()
}

// A peer that sends more than the window, or garbage, ends the mux with an
// error rather than growing a buffer without bound.
func TestMuxRejectsBadFrames(t *testing.T) {
	for name, frames := range map[string][]byte{
		"overrun":   append(frame(frameOpen, 1, nil), bytes.Repeat(frame(frameData, 1, make([]byte, maxPayload)), Window/maxPayload+1)...),
		"huge":      frame(frameData, 1, make([]byte, maxPayload+1)),
		"type":      frame(99, 0, nil),
		"dup open":  append(frame(frameOpen, 1, nil), frame(frameOpen, 1, nil)...),
		"truncated": frame(frameData, 1, []byte("abc"))[:10],
	} {
		t.Run(name, func(t *testing.T) {
			m := NewMux(bytes.NewReader(frames), io.Discard)
			select {
			case <-m.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("mux did not end")
			}
			if err := m.Err(); err == nil || err == io.EOF {
				t.Errorf("err = %v, want a protocol error", err)
			}
		})
	}
}

func frame(typ byte, id uint32, payload []byte) []byte {
	var b bytes.Buffer
	m := &Mux{w: &b, done: make(chan struct{})}
	m.write(typ, id, payload)
	return b.Bytes()
}

// listen relays real TCP connections through the mux, several at once.
func TestListenRelays(t *testing.T) {
	hr, gw2h := io.Pipe()
	gr, h2gw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- listen("tcp", "127.0.0.1:0", hr, h2gw) }()
	g := NewMux(gr, gw2h)
	addr, err := g.WaitReady(time.After(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	go func() { // the gateway side: echo in upper case
		for {
			c, _, err := g.Accept()
			if err != nil {
				return
			}
			go func() {
				b, _ := io.ReadAll(c)
				c.Write([]byte(strings.ToUpper(string(b))))
				c.Close()
			}()
		}
	}()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			msg := strings.Repeat("abc", i+1)
			c.Write([]byte(msg))
			c.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(c)
			if string(got) != strings.ToUpper(msg) {
				t.Errorf("got %q", got)
			}
		}()
	}
	wg.Wait()
	gw2h.Close() // the gateway closes the listener: stdin ends
	if err := <-done; err != nil {
		t.Errorf("listen = %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the port still listens after stdin ended")
	}
}

// Connections beyond MaxConns are refused, on both ends, and a slot is
// free again once one closes.
func TestMuxBoundsConnections(t *testing.T) {
	h, g := pair(t)
	var open []*Conn
	for range MaxConns {
		c, err := h.Open("x")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if _, err := h.Open("x"); err == nil {
		t.Fatal("opened one connection too many")
	}
	open[0].Close()
	if _, err := h.Open("x"); err != nil {
		t.Errorf("after a close: %v", err)
	}

	// A peer ignoring the bound gets the excess closed at once.
	var b bytes.Buffer
	for id := uint32(1); id <= MaxConns+1; id++ {
		b.Write(frame(frameOpen, id, nil))
	}
	var out syncBuffer
	in, feed := io.Pipe() // stays open: the mux must not end meanwhile
	go feed.Write(b.Bytes())
	m := NewMux(in, &out)
	defer func() { feed.Close(); m.Close() }()
	waitUntil(t, func() bool { return bytes.Contains(out.Bytes(), frame(frameClose, MaxConns+1, nil)) })
	if bytes.Contains(out.Bytes(), frame(frameClose, 1, nil)) {
		t.Error("a connection within the bound was closed")
	}
	_ = g
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
