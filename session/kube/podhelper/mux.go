// Package podhelper is the gateway's helper inside a project pod (the
// `ds01-gateway pod-helper` subcommand, run in the pod's ds01-helper
// sidecar) and the framed protocol the gateway speaks with it. A pod has no
// host namespace the gateway could enter as with Docker, so whatever must
// happen inside the pod's network or see its processes runs here, exec'd
// by the gateway through the API: listening sockets (ssh -R, agent
// sockets), dials beyond the pod's loopback, and counting or ending the
// user's processes.
//
// The protocol multiplexes many connections over one exec's stdin and
// stdout. Each frame is a 9-byte header (type, connection id, payload
// length, big-endian) and its payload. A connection's sender may have at
// most Window bytes unacknowledged; the receiver buffers them and returns
// credit as its reader consumes them, so one slow connection never stalls
// the others or the shared stream.
package podhelper

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Frame types.
const (
	frameOpen   = 1 // helper to gateway: a new connection; payload: its peer's address
	frameData   = 2
	frameEOF    = 3 // the sender writes no more on this connection
	frameClose  = 4 // the sender is done with this connection
	frameWindow = 5 // payload: uint32 more bytes the receiver may send
	frameReady  = 6 // id 0; payload: the address listened on
	frameError  = 7 // id 0; payload: why the helper gives up
)

const (
	headerLen = 9
	// maxPayload bounds one frame: a reader never allocates more.
	maxPayload = 32 << 10
	// Window is how many bytes one connection may have in flight in each
	// direction: enough for a fast stream over the API's latency.
	Window = 512 << 10
	// MaxConns bounds the connections open at once on one mux, and with
	// Window the memory a user's connections can pin in the gateway: a
	// listener's peers could otherwise send and never be read.
	MaxConns = 128
	// acceptBacklog bounds connections opened but not yet accepted.
	acceptBacklog = 64
)

// ErrClosed is what a closed mux or connection returns.
var ErrClosed = errors.New("podhelper: connection closed")

var errTooMany = fmt.Errorf("podhelper: more than %d connections at once", MaxConns)

// Mux is one end of the protocol.
type Mux struct {
	wmu sync.Mutex
	w   io.Writer

	mu     sync.Mutex
	conns  map[uint32]*Conn
	nextID uint32
	err    error // set once the mux has ended

	accept chan *Conn
	ready  chan string
	done   chan struct{}
}

// NewMux starts reading frames from r; frames are written to w, one Write
// per frame. The mux ends when r ends or Close is called.
func NewMux(r io.Reader, w io.Writer) *Mux {
	m := &Mux{w: w, conns: map[uint32]*Conn{}, accept: make(chan *Conn, acceptBacklog),
		ready: make(chan string, 1), done: make(chan struct{})}
	go m.read(r)
	return m
}

// Done is closed when the mux has ended.
func (m *Mux) Done() <-chan struct{} { return m.done }

// Err is why the mux ended; nil while it runs, io.EOF when its input ended.
func (m *Mux) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Close ends the mux and every connection on it.
func (m *Mux) Close() error {
	m.end(ErrClosed)
	return nil
}

// Ready tells the gateway what the helper listens on.
func (m *Mux) Ready(addr string) error { return m.write(frameReady, 0, []byte(addr)) }

// Fail tells the gateway why the helper gives up.
func (m *Mux) Fail(msg string) error { return m.write(frameError, 0, []byte(msg)) }

// WaitReady returns the address of a Ready frame, or the error of an Error
// frame or of the mux's end.
func (m *Mux) WaitReady(timeout <-chan time.Time) (string, error) {
	select {
	case a := <-m.ready:
		return a, nil
	case <-m.done:
		select {
		case a := <-m.ready:
			return a, nil
		default:
		}
		return "", m.Err()
	case <-timeout:
		return "", errors.New("the pod helper did not answer")
	}
}

// Open starts a new connection and tells the peer its remote address.
func (m *Mux) Open(remote string) (*Conn, error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return nil, m.err
	}
	if len(m.conns) >= MaxConns {
		m.mu.Unlock()
		return nil, errTooMany
	}
	m.nextID++
	c := newConn(m, m.nextID)
	m.conns[c.id] = c
	m.mu.Unlock()
	if err := m.write(frameOpen, c.id, []byte(remote)); err != nil {
		return nil, err
	}
	return c, nil
}

// Accept returns the next connection the peer opened, and the address it
// named.
func (m *Mux) Accept() (*Conn, string, error) {
	select {
	case c := <-m.accept:
		return c, c.remote, nil
	case <-m.done:
		return nil, "", m.Err()
	}
}

func (m *Mux) write(typ byte, id uint32, payload []byte) error {
	buf := make([]byte, headerLen+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], id)
	binary.BigEndian.PutUint32(buf[5:9], uint32(len(payload))) //nolint:gosec // at most maxPayload
	copy(buf[headerLen:], payload)
	m.wmu.Lock()
	defer m.wmu.Unlock()
	select {
	case <-m.done:
		return ErrClosed
	default:
	}
	if _, err := m.w.Write(buf); err != nil {
		go m.end(fmt.Errorf("podhelper: write: %w", err))
		return err
	}
	return nil
}

// read dispatches frames. It never blocks on a connection's reader: a
// connection's data is bounded by its window, and a peer that overruns it
// ends the mux.
func (m *Mux) read(r io.Reader) {
	var hdr [headerLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("podhelper: truncated frame: %w", err)
			}
			m.end(err)
			return
		}
		typ, id, n := hdr[0], binary.BigEndian.Uint32(hdr[1:5]), binary.BigEndian.Uint32(hdr[5:9])
		if n > maxPayload {
			m.end(fmt.Errorf("podhelper: frame of %d bytes", n))
			return
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			m.end(fmt.Errorf("podhelper: truncated frame: %w", err))
			return
		}
		if err := m.dispatch(typ, id, payload); err != nil {
			m.end(err)
			return
		}
	}
}

func (m *Mux) dispatch(typ byte, id uint32, payload []byte) error {
	switch typ {
	case frameReady:
		select {
		case m.ready <- string(payload):
		default:
		}
		return nil
	case frameError:
		return fmt.Errorf("pod helper: %s", payload)
	case frameOpen:
		m.mu.Lock()
		if _, dup := m.conns[id]; dup || id == 0 {
			m.mu.Unlock()
			return fmt.Errorf("podhelper: connection %d opened twice", id)
		}
		c := newConn(m, id)
		c.remote = string(payload)
		m.conns[id] = c
		full := len(m.conns) > MaxConns
		m.mu.Unlock()
		if full {
			go c.Close() // the peer exceeds the bound: refuse
			return nil
		}
		select {
		case m.accept <- c:
		default:
			// Nobody accepts fast enough: refuse rather than stall the
			// other connections.
			go c.Close()
		}
		return nil
	}
	if typ < frameData || typ > frameWindow {
		return fmt.Errorf("podhelper: unknown frame type %d", typ)
	}
	m.mu.Lock()
	c := m.conns[id]
	m.mu.Unlock()
	if c == nil {
		return nil // closed here already; the peer's frames cross ours
	}
	switch typ {
	case frameData:
		return c.deliver(payload)
	case frameEOF:
		c.peerEOF(nil)
	case frameClose:
		c.peerEOF(ErrClosed)
		c.mu.Lock()
		c.peerClosed = true
		c.cond.Broadcast()
		c.mu.Unlock()
	case frameWindow:
		if len(payload) != 4 {
			return fmt.Errorf("podhelper: window frame of %d bytes", len(payload))
		}
		c.mu.Lock()
		c.credit += int(binary.BigEndian.Uint32(payload))
		c.cond.Broadcast()
		c.mu.Unlock()
	}
	return nil
}

// end ends the mux once, with err, and every connection with it.
func (m *Mux) end(err error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = err
	conns := m.conns
	m.conns = map[uint32]*Conn{}
	close(m.done)
	m.mu.Unlock()
	for _, c := range conns {
		c.peerEOF(err)
		c.mu.Lock()
		c.peerClosed = true
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (m *Mux) forget(id uint32) {
	m.mu.Lock()
	delete(m.conns, id)
	m.mu.Unlock()
}

// Conn is one multiplexed connection. Deadlines are not supported.
type Conn struct {
	m      *Mux
	id     uint32
	remote string

	mu         sync.Mutex
	cond       *sync.Cond
	buf        bytes.Buffer
	readErr    error // io.EOF once the peer's EOF is read past the buffer
	credit     int   // bytes this side may still send
	consumed   int   // bytes read but not yet credited back
	peerClosed bool  // the peer closed: writes fail
	wrClosed   bool
	closed     bool

	// LocalAddr and RemoteAddr are what the net.Conn methods return.
	Local, Remote net.Addr
}

func newConn(m *Mux, id uint32) *Conn {
	c := &Conn{m: m, id: id, credit: Window}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *Conn) deliver(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if c.buf.Len()+len(p) > Window {
		return fmt.Errorf("podhelper: connection %d overran its window", c.id)
	}
	c.buf.Write(p)
	c.cond.Broadcast()
	return nil
}

func (c *Conn) peerEOF(err error) {
	c.mu.Lock()
	if c.readErr == nil {
		if err == nil || errors.Is(err, ErrClosed) || errors.Is(err, io.EOF) {
			err = io.EOF
		}
		c.readErr = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Read reads what the peer sent, then io.EOF once it closed its side.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	for c.buf.Len() == 0 && c.readErr == nil && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if c.buf.Len() == 0 {
		err := c.readErr
		c.mu.Unlock()
		return 0, err
	}
	n, _ := c.buf.Read(p)
	c.consumed += n
	credit := 0
	// Credit back in batches, not per read: a frame per small read would
	// double the traffic.
	if c.consumed >= Window/4 && !c.peerClosed {
		credit, c.consumed = c.consumed, 0
	}
	c.mu.Unlock()
	if credit > 0 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(credit)) //nolint:gosec // at most Window
		_ = c.m.write(frameWindow, c.id, b[:])           // a failed write ends the mux
	}
	return n, nil
}

// Write sends p, waiting for credit when the peer's reader lags.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		c.mu.Lock()
		for c.credit == 0 && !c.closed && !c.wrClosed && !c.peerClosed {
			c.cond.Wait()
		}
		if c.closed || c.wrClosed || c.peerClosed {
			c.mu.Unlock()
			return written, ErrClosed
		}
		n := min(len(p), c.credit, maxPayload)
		c.credit -= n
		c.mu.Unlock()
		if err := c.m.write(frameData, c.id, p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// CloseWrite tells the peer no more data follows; reading goes on.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	if c.wrClosed || c.closed {
		c.mu.Unlock()
		return nil
	}
	c.wrClosed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.m.write(frameEOF, c.id, nil)
}

// Close ends the connection both ways.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	told := c.peerClosed
	c.buf.Reset()
	c.cond.Broadcast()
	c.mu.Unlock()
	c.m.forget(c.id)
	if told {
		return nil
	}
	if err := c.m.write(frameClose, c.id, nil); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// LocalAddr is c.Local, or a placeholder.
func (c *Conn) LocalAddr() net.Addr {
	if c.Local == nil {
		return Addr{Net: "podhelper", Addr: "pod"}
	}
	return c.Local
}

// RemoteAddr is c.Remote, or the address the peer named at Open.
func (c *Conn) RemoteAddr() net.Addr {
	if c.Remote == nil {
		return Addr{Net: "podhelper", Addr: c.remote}
	}
	return c.Remote
}

// Addr is an address inside the pod as the helper names it.
type Addr struct{ Net, Addr string }

// Network is a.Net.
func (a Addr) Network() string { return a.Net }

func (a Addr) String() string { return a.Addr }

var errDeadline = errors.New("podhelper: deadlines are not supported")

// SetDeadline is not supported.
func (c *Conn) SetDeadline(time.Time) error { return errDeadline }

// SetReadDeadline is not supported.
func (c *Conn) SetReadDeadline(time.Time) error { return errDeadline }

// SetWriteDeadline is not supported.
func (c *Conn) SetWriteDeadline(time.Time) error { return errDeadline }
