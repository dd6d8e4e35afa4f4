package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

// relay starts an echo server behind a delayrelay and returns the relay's
// address.
func relay(t *testing.T, delay time.Duration) string {
	t.Helper()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, echo.Addr().String(), delay)
	return ln.Addr().String()
}

func TestRoundTripTakesBothDelays(t *testing.T) {
	const delay = 30 * time.Millisecond
	c, err := net.Dial("tcp", relay(t, delay))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*delay || rtt > 2*delay+500*time.Millisecond {
			t.Errorf("round trip %v, want about %v", rtt, 2*delay)
		}
		if string(buf) != "ping" {
			t.Fatalf("got %q", buf)
		}
	}
}

// Throughput is not bound by the delay: 8 MiB in 32 KiB chunks would take
// 256 x 2 x 30 ms = 15 s if each chunk waited for the one before. The
// bytes arrive whole and in order, and the end of the stream follows them.
func TestBulkKeepsOrderAndThroughput(t *testing.T) {
	const delay = 30 * time.Millisecond
	c, err := net.Dial("tcp", relay(t, delay))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := make([]byte, 8<<20)
	rand.Read(want)
	start := time.Now()
	go func() {
		c.Write(want)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, not the %d sent in order", len(got), len(want))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("8 MiB took %v through a %v relay: throughput is serialised", d, delay)
	}
}
