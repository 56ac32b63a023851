// openloop: HTTP/1.1 load at a constant offered rate over a fixed pool of keep-alive
// connections, every request timed from the moment it was due (coordinated omission corrected,
// as wrk2 does), for passclear's benchmarks. Standard library only.
//
// Request k is due at start + k/rate. A scheduler hands each request, when due, to a queue that
// the connections drain (one request in flight per connection); a request due while every
// connection is busy waits in the queue, and that wait is part of its latency. Requests are
// read whole from a file of raw HTTP requests, each used once, in order: "<length>\n<bytes>".
// The connections are all open before the clock starts (a connection lost later is dialled
// again, and that dial is part of its next request's latency).
//
// Written because vegeta (the ready-made open-loop tool) cost ~0.11 ms of CPU per request here,
// a third of a core at 3,000/s on a 2-core machine whose cores the services under test need;
// this one writes prepared bytes and reads only the status line and Content-Length.
//
// Output: one line per request, "seq,due_ns,sent_ns,done_ns,status" (ns from start; status 0 for
// a transport error or timeout), and on stderr a one-line summary.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

type result struct {
	due, sent, done int64
	status          int
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8102", "host:port of the server")
	rate := flag.Float64("rate", 1000, "requests per second offered")
	duration := flag.Duration("duration", 10*time.Second, "how long requests are offered")
	connections := flag.Int("connections", 64, "keep-alive connections (requests in flight at most)")
	requestsPath := flag.String("requests", "", "file of raw requests: \"<length>\\n<bytes>\" each")
	outPath := flag.String("out", "", "results file")
	timeout := flag.Duration("timeout", 10*time.Second, "per request")
	flag.Parse()

	requests, err := readRequests(*requestsPath)
	if err != nil {
		fail(err)
	}
	total := int(*rate * duration.Seconds())
	if total > len(requests) {
		fail(fmt.Errorf("%d requests offered but %d in %s: each request is sent once", total, len(requests), *requestsPath))
	}
	results := make([]result, total)
	queue := make(chan int, total)
	// Every connection is open before the clock starts, as a site's keep-alive connection is when
	// it redeems: 256 connects and accepts at once inside the first second were not redemptions.
	conns := make([]net.Conn, *connections)
	for c := range conns {
		if conns[c], err = net.DialTimeout("tcp", *addr, *timeout); err != nil {
			fail(err)
		}
	}
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < *connections; c++ {
		wg.Add(1)
		go func(conn net.Conn) {
			defer wg.Done()
			connection(conn, *addr, *timeout, start, requests, queue, results)
		}(conns[c])
	}
	schedule(start, *rate, total, queue, results)
	close(queue)
	wg.Wait()
	if err := write(*outPath, results); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "openloop: %d requests at %.0f/s over %d connections in %.1f s\n",
		total, *rate, *connections, time.Since(start).Seconds())
}

// schedule queues request k at start + k/rate (never early; late when this goroutine was).
func schedule(start time.Time, rate float64, total int, queue chan<- int, results []result) {
	for k := 0; k < total; k++ {
		due := int64(float64(k) * 1e9 / rate)
		if wait := time.Duration(due - int64(time.Since(start))); wait > 0 {
			time.Sleep(wait)
		}
		results[k].due = due
		queue <- k
	}
}

// connection sends the queued requests over conn, one at a time; after an error it dials again.
func connection(conn net.Conn, addr string, timeout time.Duration, start time.Time, requests [][]byte, queue <-chan int, results []result) {
	reader := bufio.NewReaderSize(conn, 16*1024)
	for k := range queue {
		r := &results[k]
		r.sent = int64(time.Since(start))
		status, err := -1, error(nil)
		if conn == nil {
			conn, err = net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				reader = bufio.NewReaderSize(conn, 16*1024)
			}
		}
		if err == nil {
			status, err = exchange(conn, reader, requests[k], timeout)
		}
		r.done = int64(time.Since(start))
		if err != nil {
			r.status = 0
			if conn != nil {
				conn.Close()
			}
			conn = nil
			continue
		}
		r.status = status
	}
	if conn != nil {
		conn.Close()
	}
}

var errNoLength = errors.New("a response without Content-Length (chunked answers are not read)")

// exchange writes one request and reads its response: status line, headers, Content-Length bytes.
func exchange(conn net.Conn, reader *bufio.Reader, request []byte, timeout time.Duration) (int, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := conn.Write(request); err != nil {
		return 0, err
	}
	line, err := reader.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 201 Created\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("not an HTTP status line: %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, err
	}
	length, closing := -1, false
	for {
		line, err = reader.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 { // the blank line ending the headers
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, err
			}
		case bytes.EqualFold(name, []byte("connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		}
	}
	if length < 0 {
		return 0, errNoLength
	}
	if _, err := reader.Discard(length); err != nil {
		return 0, err
	}
	if closing {
		return status, errors.New("the server closed the connection") // reconnect for the next one
	}
	return status, nil
}

func readRequests(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var requests [][]byte
	for len(data) > 0 {
		header, rest, found := bytes.Cut(data, []byte("\n"))
		if !found {
			return nil, errors.New("truncated requests file")
		}
		n, err := strconv.Atoi(string(header))
		if err != nil || n > len(rest) {
			return nil, fmt.Errorf("bad request length %q", header)
		}
		requests = append(requests, rest[:n])
		data = rest[n:]
	}
	return requests, nil
}

func write(path string, results []result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for k, r := range results {
		fmt.Fprintf(w, "%d,%d,%d,%d,%d\n", k, r.due, r.sent, r.done, r.status)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "openloop:", err)
	os.Exit(2)
}
