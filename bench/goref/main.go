// Command goref is bench/run.py's Go reference server: job.submit and job.get over JSON-RPC
// 2.0 (POST /rpc, HTTP/1.1 on a Unix socket), on fasthttp and database/sql with
// mattn/go-sqlite3, in automd's SQLite schema. It is what an engineer would write in Go in an
// afternoon: one transaction, and so one fsync (WAL, synchronous=FULL), per submit on a single
// writer connection; reads on a pool of read-only connections.
//
//	goref -unix PATH -db FILE -definitions FILE
//
// The database must exist with automd's schema (bench/run.py creates it with automd's own
// migrations). The definitions file is JSON written by bench/run.py from automd's definitions:
//
//	{"NAME": {"parameters": {"P": {"type": "string", "required": true, "min_length": 0,
//	  "max_length": 64}}, "plan": {...automd's plan, argv holding "{P}"...}}}
//
// Only string parameters are supported (all the benchmark's definition has). Builds offline
// with Debian 12's Go 1.19 in GOPATH mode against golang-github-valyala-fasthttp-dev and
// golang-github-mattn-go-sqlite3-dev (bench/run.py).
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	_ "github.com/mattn/go-sqlite3"
	"github.com/valyala/fasthttp"
)

const idempotencyWindow = 24 * time.Hour

// unknownCaller stands for the caller's uid and pid: like the FastAPI reference, goref does
// not read the socket's peer credentials.
const unknownCaller = -1

// ---------------------------------------------------------------- JSON-RPC

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	ID      json.RawMessage `json:"id"`
}

type rpcError struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Data    interface{} `json:"data,omitempty"`
}

func (e *rpcError) Error() string { return e.Message }

type rpcReply struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  interface{}     `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

func invalidParams(field, reason string) *rpcError {
	return &rpcError{-32602, "Invalid params", map[string]string{"field": field, "reason": reason}}
}

// ---------------------------------------------------------------- the API's shapes

type submitParams struct {
	Definition     string                     `json:"definition"`
	Params         map[string]json.RawMessage `json:"params"`
	IdempotencyKey *string                    `json:"idempotency_key"`
}

type getParams struct {
	ID string `json:"id"`
}

// ending is how the last attempt of a job, or an attempt, ended: systemd's words.
type ending struct {
	Result   *string `json:"result"`
	ExitCode *int64  `json:"exit_code"`
	Signal   *int64  `json:"signal"`
}

// jobView is automd's JobView (automd/api/jobs.py); times are RFC 3339 in UTC.
type jobView struct {
	ID              string            `json:"id"`
	Definition      string            `json:"definition"`
	State           string            `json:"state"`
	Params          map[string]string `json:"params"`
	CreatedAt       string            `json:"created_at"`
	UpdatedAt       string            `json:"updated_at"`
	FinishedAt      *string           `json:"finished_at"`
	Attempts        int               `json:"attempts"`
	MaxAttempts     int               `json:"max_attempts"`
	NextAttemptAt   *string           `json:"next_attempt_at"`
	CancelRequested bool              `json:"cancel_requested"`
	ending
	Outcome        *string `json:"outcome"`
	Unit           *string `json:"unit"`
	IdempotencyKey *string `json:"idempotency_key"`
	Traceparent    *string `json:"traceparent"`
}

type attemptView struct {
	Number       int64   `json:"number"`
	Unit         string  `json:"unit"`
	InvocationID *string `json:"invocation_id"`
	State        string  `json:"state"`
	ending
	OutcomeSource *string `json:"outcome_source"`
	StartedAt     string  `json:"started_at"`
	FinishedAt    *string `json:"finished_at"`
	RetryReason   *string `json:"retry_reason"`
}

type eventView struct {
	At      string  `json:"at"`
	Attempt *int64  `json:"attempt"`
	State   string  `json:"state"`
	Detail  *string `json:"detail"`
}

type submitResult struct {
	Job      *jobView `json:"job"`
	Replayed bool     `json:"replayed"`
}

type getResult struct {
	Job      *jobView      `json:"job"`
	Attempts []attemptView `json:"attempts"`
	Events   []eventView   `json:"events"`
}

func timestamp(seconds float64) string {
	sec := int64(seconds)
	t := time.Unix(sec, int64((seconds-float64(sec))*1e9)).UTC()
	return t.Format("2006-01-02T15:04:05.999999Z07:00")
}

func maybeTimestamp(seconds sql.NullFloat64) *string {
	if !seconds.Valid {
		return nil
	}
	s := timestamp(seconds.Float64)
	return &s
}

func maybeString(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func maybeInt(i sql.NullInt64) *int64 {
	if !i.Valid {
		return nil
	}
	return &i.Int64
}

// ---------------------------------------------------------------- definitions

type parameter struct {
	Type      string `json:"type"`
	Required  bool   `json:"required"`
	MinLength int    `json:"min_length"`
	MaxLength int    `json:"max_length"`
}

type definition struct {
	Parameters map[string]parameter   `json:"parameters"`
	Plan       map[string]interface{} `json:"plan"`
}

func loadDefinitions(path string) (map[string]*definition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var defs map[string]*definition
	if err := json.Unmarshal(data, &defs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for name, def := range defs {
		for param, spec := range def.Parameters {
			if spec.Type != "string" {
				return nil, fmt.Errorf("%s: %s.%s: only string parameters are supported", path, name, param)
			}
		}
		if _, ok := def.Plan["argv"].([]interface{}); !ok {
			return nil, fmt.Errorf("%s: %s: the plan has no argv", path, name)
		}
	}
	return defs, nil
}

// validate checks the submitted values against the definition's parameters.
func (d *definition) validate(raw map[string]json.RawMessage) (map[string]string, error) {
	values := make(map[string]string, len(d.Parameters))
	for name := range raw {
		if _, ok := d.Parameters[name]; !ok {
			return nil, invalidParams(name, "unknown parameter")
		}
	}
	for name, spec := range d.Parameters {
		value, given := raw[name]
		if !given {
			if spec.Required {
				return nil, invalidParams(name, "required")
			}
			continue
		}
		var s string
		if err := json.Unmarshal(value, &s); err != nil {
			return nil, invalidParams(name, "not a string")
		}
		n := utf8.RuneCountInString(s)
		switch {
		case n < spec.MinLength || n > spec.MaxLength:
			return nil, invalidParams(name, fmt.Sprintf("length must be %d to %d", spec.MinLength, spec.MaxLength))
		case strings.HasPrefix(s, "-"):
			return nil, invalidParams(name, "must not start with '-'")
		case strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
			return nil, invalidParams(name, "control characters are not allowed")
		}
		values[name] = s
	}
	return values, nil
}

// plan is the definition's plan with the values in argv, as JSON text (stored with the job).
func (d *definition) plan(values map[string]string) (string, error) {
	pairs := make([]string, 0, 2*len(values))
	for name, value := range values {
		pairs = append(pairs, "{"+name+"}", value)
	}
	replacer := strings.NewReplacer(pairs...)
	template := d.Plan["argv"].([]interface{})
	argv := make([]string, len(template))
	for i, arg := range template {
		argv[i] = replacer.Replace(fmt.Sprint(arg))
	}
	plan := make(map[string]interface{}, len(d.Plan))
	for key, value := range d.Plan {
		plan[key] = value
	}
	plan["argv"] = argv
	text, err := json.Marshal(plan)
	return string(text), err
}

func maxAttempts(plan map[string]interface{}) int {
	if retry, ok := plan["retry"].(map[string]interface{}); ok {
		if n, ok := retry["max_attempts"].(float64); ok {
			return int(n)
		}
	}
	return 1
}

// fingerprint is what an idempotency key is bound to: the definition and the values.
func fingerprint(definition string, values map[string]string) string {
	text, _ := json.Marshal([]interface{}{definition, values}) // maps marshal sorted by key
	sum := sha256.Sum256(text)
	return hex.EncodeToString(sum[:])
}

// newJobID is a ULID in automd's spelling: 48 bits of milliseconds then 80 random bits, in
// 26 lower-case Crockford base32 digits.
func newJobID(now time.Time) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(raw[6:]); err != nil {
		panic(err)
	}
	const digits = "0123456789abcdefghjkmnpqrstvwxyz"
	hi, lo := binary.BigEndian.Uint64(raw[:8]), binary.BigEndian.Uint64(raw[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = digits[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// ---------------------------------------------------------------- the service

// service holds its SQL prepared once, on the connections that run it.
type service struct {
	writer      *sql.DB
	definitions map[string]*definition
	// writer's
	findKey, loadEarlier, insertJob, insertKey, insertEvent *sql.Stmt
	// reader's
	loadJob, loadAttempts, loadEvents *sql.Stmt
}

func (s *service) prepare(writer, reader *sql.DB) error {
	statements := []struct {
		db   *sql.DB
		into **sql.Stmt
		text string
	}{
		{writer, &s.findKey, `SELECT job_id, fingerprint FROM idempotency_keys
			WHERE caller_uid = ? AND key = ? AND created_at >= ?`},
		{writer, &s.loadEarlier, `SELECT ` + jobColumns + ` FROM jobs WHERE id = ?`},
		{writer, &s.insertJob, `INSERT INTO jobs (id, definition, params, plan, state,
			caller_uid, caller_pid, idempotency_key, created_at, updated_at, attempts,
			max_attempts, cancel_requested) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, 0, ?, 0)`},
		{writer, &s.insertKey, `INSERT OR REPLACE INTO idempotency_keys
			(caller_uid, key, job_id, fingerprint, created_at) VALUES (?, ?, ?, ?, ?)`},
		{writer, &s.insertEvent, `INSERT INTO job_events (job_id, at, attempt, state, detail)
			VALUES (?, ?, NULL, 'queued', 'submitted')`},
		{reader, &s.loadJob, `SELECT ` + jobColumns + ` FROM jobs WHERE id = ?`},
		{reader, &s.loadAttempts, `SELECT number, unit, invocation_id, state, result,
			exit_code, signal, outcome_source, started_at, finished_at, retry_reason
			FROM attempts WHERE job_id = ? ORDER BY number`},
		{reader, &s.loadEvents, `SELECT at, attempt, state, detail FROM job_events
			WHERE job_id = ? ORDER BY at, rowid`},
	}
	for _, st := range statements {
		prepared, err := st.db.Prepare(st.text)
		if err != nil {
			return fmt.Errorf("%s: %w", st.text, err)
		}
		*st.into = prepared
	}
	return nil
}

var jobIDPattern = regexp.MustCompile(`^[0-9a-z]{26}$`)

const jobColumns = `id, definition, params, state, idempotency_key, created_at, updated_at,
	attempts, max_attempts, next_attempt_at, cancel_requested, result, exit_code, signal,
	finished_at, outcome, traceparent`

type scanner interface {
	Scan(dest ...interface{}) error
}

func scanJob(row scanner) (*jobView, error) {
	var (
		job                               jobView
		params                            string
		created, updated                  float64
		next, finished                    sql.NullFloat64
		key, result, outcome, traceparent sql.NullString
		exitCode, signalNumber            sql.NullInt64
		cancel                            int64
	)
	err := row.Scan(&job.ID, &job.Definition, &params, &job.State, &key, &created, &updated,
		&job.Attempts, &job.MaxAttempts, &next, &cancel, &result, &exitCode, &signalNumber,
		&finished, &outcome, &traceparent)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(params), &job.Params); err != nil {
		return nil, err
	}
	job.CreatedAt, job.UpdatedAt = timestamp(created), timestamp(updated)
	job.NextAttemptAt, job.FinishedAt = maybeTimestamp(next), maybeTimestamp(finished)
	job.CancelRequested = cancel != 0
	job.IdempotencyKey, job.Result = maybeString(key), maybeString(result)
	job.Outcome, job.Traceparent = maybeString(outcome), maybeString(traceparent)
	job.ExitCode, job.Signal = maybeInt(exitCode), maybeInt(signalNumber)
	return &job, nil
}

func (s *service) submit(raw json.RawMessage) (interface{}, error) {
	var p submitParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, invalidParams("", err.Error())
	}
	def, ok := s.definitions[p.Definition]
	if !ok {
		return nil, &rpcError{1001, "Unknown definition", map[string]string{"definition": p.Definition}}
	}
	values, err := def.validate(p.Params)
	if err != nil {
		return nil, err
	}
	plan, err := def.plan(values)
	if err != nil {
		return nil, err
	}
	paramsText, err := json.Marshal(values)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	created := float64(now.UnixNano()) / 1e9
	job := &jobView{
		ID: newJobID(now), Definition: p.Definition, State: "queued", Params: values,
		CreatedAt: timestamp(created), UpdatedAt: timestamp(created),
		MaxAttempts: maxAttempts(def.Plan), IdempotencyKey: p.IdempotencyKey,
	}
	bound := fingerprint(p.Definition, values)

	// One transaction per submit: BEGIN IMMEDIATE (_txlock), COMMIT fsyncs the WAL.
	tx, err := s.writer.Begin()
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if key := p.IdempotencyKey; key != nil {
		var earlierID, earlierPrint string
		err := tx.Stmt(s.findKey).QueryRow(unknownCaller, *key,
			created-idempotencyWindow.Seconds()).Scan(&earlierID, &earlierPrint)
		switch {
		case err == nil && earlierPrint != bound:
			return nil, &rpcError{1004, "Idempotency conflict", map[string]string{"idempotency_key": *key, "job": earlierID}}
		case err == nil:
			earlier, err := scanJob(tx.Stmt(s.loadEarlier).QueryRow(earlierID))
			if err != nil {
				return nil, err
			}
			return submitResult{earlier, true}, nil
		case !errors.Is(err, sql.ErrNoRows):
			return nil, err
		}
	}
	_, err = tx.Stmt(s.insertJob).Exec(job.ID, job.Definition, string(paramsText), plan, unknownCaller, unknownCaller,
		p.IdempotencyKey, created, created, job.MaxAttempts)
	if err != nil {
		return nil, err
	}
	if p.IdempotencyKey != nil {
		_, err = tx.Stmt(s.insertKey).Exec(unknownCaller, *p.IdempotencyKey, job.ID, bound, created)
		if err != nil {
			return nil, err
		}
	}
	_, err = tx.Stmt(s.insertEvent).Exec(job.ID, created)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return submitResult{job, false}, nil
}

func (s *service) get(raw json.RawMessage) (interface{}, error) {
	var p getParams
	if err := json.Unmarshal(raw, &p); err != nil || !jobIDPattern.MatchString(p.ID) {
		return nil, invalidParams("id", "a job id (26 characters)")
	}
	job, err := scanJob(s.loadJob.QueryRow(p.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &rpcError{1002, "Job not found", map[string]string{"id": p.ID}}
	}
	if err != nil {
		return nil, err
	}
	out := getResult{Job: job, Attempts: []attemptView{}, Events: []eventView{}}
	rows, err := s.loadAttempts.Query(p.ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			a                                 attemptView
			invocation, result, source, retry sql.NullString
			exitCode, signalNumber            sql.NullInt64
			started                           float64
			finished                          sql.NullFloat64
		)
		if err := rows.Scan(&a.Number, &a.Unit, &invocation, &a.State, &result, &exitCode,
			&signalNumber, &source, &started, &finished, &retry); err != nil {
			return nil, err
		}
		a.InvocationID, a.Result, a.OutcomeSource = maybeString(invocation), maybeString(result), maybeString(source)
		a.RetryReason, a.ExitCode, a.Signal = maybeString(retry), maybeInt(exitCode), maybeInt(signalNumber)
		a.StartedAt, a.FinishedAt = timestamp(started), maybeTimestamp(finished)
		out.Attempts = append(out.Attempts, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	events, err := s.loadEvents.Query(p.ID)
	if err != nil {
		return nil, err
	}
	defer events.Close()
	for events.Next() {
		var (
			e       eventView
			at      float64
			attempt sql.NullInt64
			detail  sql.NullString
		)
		if err := events.Scan(&at, &attempt, &e.State, &detail); err != nil {
			return nil, err
		}
		e.At, e.Attempt, e.Detail = timestamp(at), maybeInt(attempt), maybeString(detail)
		out.Events = append(out.Events, e)
	}
	return out, events.Err()
}

// ---------------------------------------------------------------- HTTP

func (s *service) handle(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != "/rpc" {
		ctx.Error("not found", fasthttp.StatusNotFound)
		return
	}
	if !ctx.IsPost() {
		ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	reply := rpcReply{JSONRPC: "2.0", ID: json.RawMessage("null")}
	var call rpcRequest
	if err := json.Unmarshal(ctx.PostBody(), &call); err != nil {
		reply.Error = &rpcError{Code: -32700, Message: "Parse error"}
	} else if call.JSONRPC != "2.0" || call.Method == "" {
		reply.Error = &rpcError{Code: -32600, Message: "Invalid Request"}
	} else {
		if len(call.ID) > 0 {
			reply.ID = call.ID
		}
		var result interface{}
		var err error
		switch call.Method {
		case "job.submit":
			result, err = s.submit(call.Params)
		case "job.get":
			result, err = s.get(call.Params)
		default:
			err = &rpcError{Code: -32601, Message: "Method not found"}
		}
		var rpcErr *rpcError
		switch {
		case errors.As(err, &rpcErr):
			reply.Error = rpcErr
		case err != nil:
			log.Printf("%s: %v", call.Method, err)
			reply.Error = &rpcError{Code: -32603, Message: "Internal error"}
		default:
			reply.Result = result
		}
	}
	ctx.SetContentType("application/json")
	if err := json.NewEncoder(ctx).Encode(reply); err != nil {
		log.Printf("reply: %v", err)
	}
}

func openDB(dsn string, connections int) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(connections)
	db.SetMaxIdleConns(connections)
	return db, db.Ping()
}

func main() {
	unixPath := flag.String("unix", "", "Unix socket to listen on")
	dbPath := flag.String("db", "", "SQLite database with automd's schema")
	definitionsPath := flag.String("definitions", "", "definitions, JSON (see the package comment)")
	readers := flag.Int("readers", 4, "read-only connections")
	flag.Parse()
	if *unixPath == "" || *dbPath == "" || *definitionsPath == "" {
		log.Fatal("-unix, -db and -definitions are needed")
	}
	defs, err := loadDefinitions(*definitionsPath)
	if err != nil {
		log.Fatal(err)
	}
	// A single writer connection: submits queue for it, each its own fsynced transaction.
	writer, err := openDB("file:"+*dbPath+"?_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1"+
		"&_busy_timeout=5000&_txlock=immediate", 1)
	if err != nil {
		log.Fatal(err)
	}
	reader, err := openDB("file:"+*dbPath+"?mode=ro&_busy_timeout=5000", *readers)
	if err != nil {
		log.Fatal(err)
	}
	s := &service{writer: writer, definitions: defs}
	if err := s.prepare(writer, reader); err != nil {
		log.Fatal(err)
	}

	os.Remove(*unixPath)
	listener, err := net.Listen("unix", *unixPath)
	if err != nil {
		log.Fatal(err)
	}
	server := &fasthttp.Server{Handler: s.handle, Name: "goref"}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		if err := server.Shutdown(); err != nil {
			log.Print(err)
		}
	}()
	if err := server.Serve(listener); err != nil {
		log.Fatal(err)
	}
	writer.Close()
	reader.Close()
}
