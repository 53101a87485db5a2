package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestHasResult(t *testing.T) {
	cases := map[string]bool{
		`{"jsonrpc":"2.0","result":{"job":{"result":null}},"id":1}`:           true,
		` { "id" : 1 , "result" : [1, "}", {"error": 2}] , "jsonrpc":"2.0" }`: true,
		`{"jsonrpc":"2.0","result":null,"id":"a\"b"}`:                         true,
		`{"jsonrpc":"2.0","error":{"code":1002,"message":"x"},"id":1}`:        false,
		`{"jsonrpc":"2.0","id":1,"data":{"result":1}}`:                        false,
		`{"result":1,"error":null}`:                                           false,
		`[{"result":1}]`:                                                      false,
		`{"result":1`:                                                         false,
		``:                                                                    false,
	}
	for body, want := range cases {
		if got := hasResult([]byte(body)); got != want {
			t.Errorf("hasResult(%s) = %v, want %v", body, got, want)
		}
	}
}

func TestRender(t *testing.T) {
	tmpl := template{[][]byte{[]byte(`{"k":"a-`), []byte(`","id":`), []byte(`}`)}}
	got := string(tmpl.render(nil, "/rpc", 42))
	want := "POST /rpc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
		"Content-Length: 20\r\n\r\n" + `{"k":"a-42","id":42}`
	if got != want {
		t.Errorf("render = %q, want %q", got, want)
	}
}

func TestReadReply(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nConnection: close\r\n\r\nbodyHTTP/1.1"
	status, body, keep, err := readReply(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil || status != 200 || string(body) != "body" || keep {
		t.Errorf("readReply = %d %q %v %v", status, body, keep, err)
	}
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	if _, _, _, err := readReply(bufio.NewReader(strings.NewReader(chunked)), nil); err == nil {
		t.Error("a chunked reply was accepted")
	}
}
