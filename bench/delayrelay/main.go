// Command delayrelay is a TCP relay that delays every byte by a fixed time
// in each direction: a stand-in for a real network link on a kernel
// without the netem qdisc. bench/run.sh puts it between ssh and the
// servers for its cold-20ms and warm-20ms rows (10 ms each way, 20 ms
// round trip).
//
// Each direction reads as fast as the sender writes and queues every chunk
// with the time it arrived; a writer sends each chunk once its delay has
// passed, in order. Latency is added, throughput is not cut (a sleep per
// read would serialise the two). The queue is bounded, so a slow receiver
// still pushes back on the sender.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "address to forward to")
	delay := flag.Duration("delay", 10*time.Millisecond, "delay added in each direction")
	flag.Parse()
	if *target == "" || *delay < 0 {
		fmt.Fprintln(os.Stderr, "delayrelay: want --target host:port and --delay >= 0")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delayrelay:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String()) // the port, when asked for :0
	if err := serve(ln, *target, *delay); err != nil {
		fmt.Fprintln(os.Stderr, "delayrelay:", err)
		os.Exit(1)
	}
}

// serve relays every connection accepted on ln to target until ln closes.
func serve(ln net.Listener, target string, delay time.Duration) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			t, err := net.Dial("tcp", target)
			if err != nil {
				fmt.Fprintln(os.Stderr, "delayrelay: dial:", err)
				return
			}
			defer t.Close()
			done := make(chan struct{}, 2)
			go func() { pipe(t, c, delay); done <- struct{}{} }()
			go func() { pipe(c, t, delay); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// chunk is data read at a time; nil data marks the end of the stream.
type chunk struct {
	due  time.Time
	data []byte
}

// queueLen bounds the chunks in flight one way (at most 32 KiB each).
const queueLen = 1024

// pipe copies src to dst, each chunk delay after it was read, then
// half-closes dst (also delay after src's end).
func pipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, queueLen)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{due: time.Now().Add(delay), data: buf[:n]}
			}
			if err != nil {
				q <- chunk{due: time.Now().Add(delay)}
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d)
		}
		if c.data == nil {
			break
		}
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = dst.Close()
	}
	// Let the reader end: it may be blocked on a full queue.
	go func() {
		for range q {
		}
	}()
}
