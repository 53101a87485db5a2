// Command loadgen is bench/run.py's load generator: a closed loop of HTTP/1.1 keep-alive
// connections sending JSON-RPC requests to a server on a Unix socket (or TCP).
//
//	loadgen -unix PATH [-c 16] [-d 10s] [-warmup 1s] [-n COUNT] -body FILE [-server-pid PID]
//
// Each of the -c connections sends its next request as soon as the reply to the previous one
// has been read, and checks that reply: HTTP 200 and a JSON-RPC object with a top-level
// "result" member. With -d, requests answered in the -warmup period are not measured and the
// run stops after -d more; with -n, COUNT requests (split over the connections) are measured
// from the start, with no warm-up, and the window ends with the last reply.
//
// FILE holds request bodies, one per line; the connections take them in turn. {{N}} in a
// line is replaced, request by request, by a number no other request of the run gets (for
// JSON-RPC ids and idempotency keys). loadgen prints one JSON object on stdout (see result).
//
// Standard library only: it builds offline with Debian 12's Go 1.19 (GO111MODULE=off).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// result is what loadgen prints; bench/run.py reads it.
type result struct {
	Connections  int     `json:"connections"`
	WarmupS      float64 `json:"warmup_s"`
	WindowS      float64 `json:"window_s"`
	Requests     int64   `json:"requests"`     // measured: good replies inside the window
	Errors       int64   `json:"errors"`       // failed or bad replies inside the window
	OKTotal      int64   `json:"ok_total"`     // good replies, warm-up included
	ErrorsTotal  int64   `json:"errors_total"` // warm-up included
	RPS          float64 `json:"rps"`          // Requests / WindowS
	MeanUs       float64 `json:"mean_us"`      // latency of the measured requests
	P50Us        float64 `json:"p50_us"`
	P90Us        float64 `json:"p90_us"`
	P99Us        float64 `json:"p99_us"`
	MaxUs        float64 `json:"max_us"`
	ClientCPUPct float64 `json:"client_cpu_pct"` // loadgen itself, in % of one CPU
	ServerCPUPct float64 `json:"server_cpu_pct"` // -server-pid, all its threads; -1 without
	// Busy time of the whole machine minus loadgen and the server: other processes, the
	// kernel's own work. Large values mean noisy figures.
	OtherCPUPct float64 `json:"other_cpu_pct"`
	FirstError  string  `json:"first_error,omitempty"`
}

// ---------------------------------------------------------------- requests

// template is one body line cut at its {{N}} marks.
type template struct {
	parts [][]byte
}

const counterMark = "{{N}}"

func loadTemplates(path string) ([]template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []template
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			out = append(out, template{bytes.Split(line, []byte(counterMark))})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no request bodies", path)
	}
	return out, nil
}

// render appends the whole HTTP request for t, with n in place of each {{N}}, to dst[:0].
func (t template) render(dst []byte, target string, n int64) []byte {
	var num [20]byte
	digits := strconv.AppendInt(num[:0], n, 10)
	length := len(digits) * (len(t.parts) - 1)
	for _, part := range t.parts {
		length += len(part)
	}
	dst = append(dst[:0], "POST "...)
	dst = append(dst, target...)
	dst = append(dst, " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(length), 10)
	dst = append(dst, "\r\n\r\n"...)
	for i, part := range t.parts {
		if i > 0 {
			dst = append(dst, digits...)
		}
		dst = append(dst, part...)
	}
	return dst
}

// ---------------------------------------------------------------- replies

var errProtocol = errors.New("malformed HTTP reply")

// readReply reads one HTTP/1.1 reply framed by Content-Length (all the servers measured
// here frame them so). body is valid until the next call; keep is false after
// "Connection: close" or an HTTP/1.0 reply.
func readReply(r *bufio.Reader, scratch []byte) (status int, body []byte, keep bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, errProtocol
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, nil, false, errProtocol
	}
	keep = line[7] == '1'
	length := -1
	for {
		header, err := r.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		if len(bytes.TrimRight(header, "\r\n")) == 0 {
			break
		}
		colon := bytes.IndexByte(header, ':')
		if colon < 0 {
			return 0, nil, false, errProtocol
		}
		name, value := header[:colon], bytes.TrimSpace(header[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, errProtocol
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, nil, false, fmt.Errorf("%w: Transfer-Encoding %s", errProtocol, value)
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	if length < 0 {
		return 0, nil, false, fmt.Errorf("%w: no Content-Length", errProtocol)
	}
	if cap(scratch) < length {
		scratch = make([]byte, length)
	}
	body = scratch[:length]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, false, err
	}
	return status, body, keep, nil
}

// hasResult tells whether body is a JSON object with a top-level "result" member and no
// "error" member. It walks the top level only, skipping nested values without decoding
// them, so that checking a reply costs far less than a server spends answering it.
func hasResult(body []byte) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i++
	found := false
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != '"' {
			return false
		}
		end := skipString(body, i)
		if end < 0 {
			return false
		}
		key := body[i+1 : end-1]
		i = skipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return false
		}
		if i = skipValue(body, skipSpace(body, i+1)); i < 0 {
			return false
		}
		switch string(key) {
		case "result":
			found = true
		case "error":
			return false
		}
		i = skipSpace(body, i)
		if i >= len(body) {
			return false
		}
		if body[i] == '}' {
			return found
		}
		if body[i] != ',' {
			return false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"', or -1.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1. Containers are
// matched by depth only; the servers' JSON encoders are trusted for the rest.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default: // number, true, false, null
		for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
			i++
		}
		return i
	}
}

// ---------------------------------------------------------------- connections

type conn struct {
	network, address string
	c                net.Conn
	r                *bufio.Reader
	scratch          []byte
}

// roundTrip sends one request and reads its reply, (re)connecting first if need be.
func (c *conn) roundTrip(request []byte) (int, []byte, error) {
	if c.c == nil {
		nc, err := net.Dial(c.network, c.address)
		if err != nil {
			return 0, nil, err
		}
		c.c, c.r = nc, bufio.NewReaderSize(nc, 64<<10)
	}
	if _, err := c.c.Write(request); err != nil {
		c.close()
		return 0, nil, err
	}
	status, body, keep, err := readReply(c.r, c.scratch)
	if err != nil || !keep {
		c.close()
	}
	if cap(body) > cap(c.scratch) {
		c.scratch = body[:0]
	}
	return status, body, err
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// ---------------------------------------------------------------- CPU time

// processTicks is utime+stime of all threads of pid (/proc/PID/stat), in clock ticks.
func processTicks(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; the fields after it start at 3 (state).
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return -1
	}
	user, _ := strconv.ParseInt(fields[11], 10, 64)
	system, _ := strconv.ParseInt(fields[12], 10, 64)
	return user + system
}

// machineTicks is the busy time of all CPUs (/proc/stat: all but idle and iowait).
func machineTicks() int64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal
	if len(fields) < 9 {
		return -1
	}
	var busy int64
	for i := 1; i <= 8; i++ {
		if i != 4 && i != 5 {
			v, _ := strconv.ParseInt(fields[i], 10, 64)
			busy += v
		}
	}
	return busy
}

func selfCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// clockTicks is USER_HZ, 100 on every Linux architecture Debian ships.
const clockTicks = 100

type cpuSample struct {
	self           time.Duration
	server, others int64
}

func sampleCPU(serverPID int) cpuSample {
	s := cpuSample{self: selfCPU(), server: -1, others: machineTicks()}
	if serverPID > 0 {
		s.server = processTicks(serverPID)
	}
	return s
}

// ---------------------------------------------------------------- the run

type worker struct {
	latencies       []time.Duration // good replies inside the window
	okTotal, errors int64
	errorsTotal     int64
	firstError      string
}

func (w *worker) fail(why string) {
	w.errorsTotal++
	if w.firstError == "" {
		w.firstError = why
	}
}

type config struct {
	network, address, target string
	connections              int
	warmup, duration         time.Duration
	count                    int64
	templates                []template
	serverPID                int
}

// loop runs connection number id until the window closes (or its share of -n is done).
func (w *worker) loop(cfg *config, id int, start <-chan struct{}, windowStart, windowEnd *time.Time, quota int64, endWindow func()) {
	c := &conn{network: cfg.network, address: cfg.address}
	defer c.close()
	var request []byte
	next := int64(id) * 1_000_000_000 // {{N}}: unique across connections
	line := id                        // the connections start on different lines
	<-start
	var measured int64
	for {
		request = cfg.templates[line%len(cfg.templates)].render(request, cfg.target, next)
		line++
		next++
		sent := time.Now()
		status, body, err := c.roundTrip(request)
		answered := time.Now()
		ok := false
		switch {
		case err != nil:
			w.fail(err.Error())
			time.Sleep(time.Millisecond) // a dead server is not spun on
		case status != 200:
			w.fail(fmt.Sprintf("HTTP %d: %.200s", status, body))
		case !hasResult(body):
			w.fail(fmt.Sprintf("no result: %.200s", body))
		default:
			ok = true
			w.okTotal++
		}
		if answered.Before(*windowStart) {
			continue
		}
		if quota == 0 && !answered.Before(*windowEnd) {
			endWindow()
			return
		}
		if ok {
			w.latencies = append(w.latencies, answered.Sub(sent))
		} else {
			w.errors++
		}
		measured++
		if quota > 0 && measured >= quota {
			return
		}
	}
}

func run(cfg *config) result {
	workers := make([]*worker, cfg.connections)
	start := make(chan struct{})
	var windowStart, windowEnd time.Time
	var begin, end cpuSample
	var endOnce sync.Once
	endWindow := func() { endOnce.Do(func() { end = sampleCPU(cfg.serverPID) }) }
	quota := int64(0)
	if cfg.count > 0 {
		quota = (cfg.count + int64(cfg.connections) - 1) / int64(cfg.connections)
	}
	var done sync.WaitGroup
	for i := range workers {
		w := &worker{latencies: make([]time.Duration, 0, 1<<15)}
		workers[i] = w
		done.Add(1)
		go func(id int) {
			defer done.Done()
			w.loop(cfg, id, start, &windowStart, &windowEnd, quota, endWindow)
		}(i)
	}
	// The window's bounds are set before the workers start, so they only ever read them.
	windowStart = time.Now().Add(cfg.warmup)
	windowEnd = windowStart.Add(cfg.duration)
	close(start)
	time.Sleep(time.Until(windowStart))
	begin = sampleCPU(cfg.serverPID)
	done.Wait()
	if quota > 0 {
		windowEnd = time.Now()
		endWindow()
	}
	return summarize(cfg, workers, windowEnd.Sub(windowStart), begin, end)
}

func summarize(cfg *config, workers []*worker, window time.Duration, begin, end cpuSample) result {
	res := result{Connections: cfg.connections, WarmupS: cfg.warmup.Seconds(), WindowS: window.Seconds()}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.latencies...)
		res.Errors += w.errors
		res.OKTotal += w.okTotal
		res.ErrorsTotal += w.errorsTotal
		if res.FirstError == "" {
			res.FirstError = w.firstError
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	res.Requests = int64(len(all))
	seconds := window.Seconds()
	res.RPS = float64(res.Requests) / seconds
	if len(all) > 0 {
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		res.MeanUs = us(sum) / float64(len(all))
		res.P50Us = us(percentile(all, 0.50))
		res.P90Us = us(percentile(all, 0.90))
		res.P99Us = us(percentile(all, 0.99))
		res.MaxUs = us(all[len(all)-1])
	}
	ticksPct := func(ticks int64) float64 { return 100 * float64(ticks) / clockTicks / seconds }
	res.ClientCPUPct = 100 * (end.self - begin.self).Seconds() / seconds
	res.ServerCPUPct = -1
	server := 0.0
	if begin.server >= 0 && end.server >= 0 {
		res.ServerCPUPct = ticksPct(end.server - begin.server)
		server = res.ServerCPUPct
	}
	res.OtherCPUPct = ticksPct(end.others-begin.others) - res.ClientCPUPct - server
	return res
}

// percentile is the nearest-rank percentile of sorted (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(p*float64(len(sorted))+0.5) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(sorted) {
		rank = len(sorted) - 1
	}
	return sorted[rank]
}

func main() {
	var cfg config
	unixPath := flag.String("unix", "", "the server's Unix socket")
	tcpAddress := flag.String("tcp", "", "or its TCP address, HOST:PORT")
	body := flag.String("body", "", "file of request bodies, one per line ({{N}}: a number unique per request)")
	flag.StringVar(&cfg.target, "path", "/rpc", "HTTP request target")
	flag.IntVar(&cfg.connections, "c", 16, "keep-alive connections, one request in flight on each")
	flag.DurationVar(&cfg.duration, "d", 10*time.Second, "measured time (without -n)")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured time before it (without -n)")
	flag.Int64Var(&cfg.count, "n", 0, "measure this many requests instead, from the start")
	flag.IntVar(&cfg.serverPID, "server-pid", 0, "process whose CPU time is reported")
	flag.Parse()
	switch {
	case (*unixPath == "") == (*tcpAddress == ""):
		fatal("one of -unix and -tcp is needed")
	case *unixPath != "":
		cfg.network, cfg.address = "unix", *unixPath
	default:
		cfg.network, cfg.address = "tcp", *tcpAddress
	}
	if *body == "" || cfg.connections < 1 {
		fatal("-body and -c >= 1 are needed")
	}
	if cfg.count > 0 {
		cfg.warmup = 0
	}
	var err error
	if cfg.templates, err = loadTemplates(*body); err != nil {
		fatal(err.Error())
	}
	out, err := json.Marshal(run(&cfg))
	if err != nil {
		fatal(err.Error())
	}
	fmt.Println(string(out))
}

func fatal(why string) {
	fmt.Fprintln(os.Stderr, "loadgen:", why)
	os.Exit(2)
}
