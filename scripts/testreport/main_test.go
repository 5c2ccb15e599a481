package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// A go test -json stream: a passing package with a skipped test, a failing test with
// log lines, a package that does not build, and a line that is not JSON.
const stream = `{"Action":"start","Package":"a"}
{"Action":"run","Package":"a","Test":"TestSkip"}
{"Action":"output","Package":"a","Test":"TestSkip","Output":"=== RUN   TestSkip\n"}
{"Action":"output","Package":"a","Test":"TestSkip","Output":"    a_test.go:9: dpkg-deb is not installed\n"}
{"Action":"output","Package":"a","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
{"Action":"skip","Package":"a","Test":"TestSkip"}
{"Action":"output","Package":"a","Output":"PASS\n"}
{"Action":"output","Package":"a","Output":"ok  \ta\t0.01s\n"}
{"Action":"pass","Package":"a"}
{"Action":"run","Package":"b","Test":"TestBad"}
{"Action":"output","Package":"b","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"output","Package":"b","Test":"TestBad","Output":"    b_test.go:5: got 2, want 3\n"}
{"Action":"output","Package":"b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"b","Test":"TestBad"}
{"Action":"run","Package":"b","Test":"TestGood"}
{"Action":"output","Package":"b","Test":"TestGood","Output":"=== RUN   TestGood\n"}
{"Action":"output","Package":"b","Test":"TestGood","Output":"    b_test.go:9: chatter\n"}
{"Action":"pass","Package":"b","Test":"TestGood"}
{"Action":"output","Package":"b","Output":"FAIL\tb\t0.02s\n"}
{"Action":"fail","Package":"b"}
go: downloading example.com/m v1.0.0
`

func TestReport(t *testing.T) {
	var out bytes.Buffer
	r := &report{out: &out, buf: map[string][]string{}}
	if err := r.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	r.summary()
	got := out.String()
	for _, want := range []string{
		"ok  \ta\t0.01s\n",
		"    b_test.go:5: got 2, want 3\n--- FAIL: TestBad (0.00s)\n",
		"FAIL\tb\t0.02s\n",
		"go: downloading example.com/m v1.0.0\n",
		"skipped tests (1), with their reasons:\n  SKIP a TestSkip: a_test.go:9: dpkg-deb is not installed\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"chatter", "=== RUN", "PASS\n"} {
		if strings.Contains(got, not) {
			t.Errorf("output has %q:\n%s", not, got)
		}
	}
	if !r.failed || r.packages != 2 {
		t.Errorf("failed %v, packages %d; want true, 2", r.failed, r.packages)
	}
}

func TestReportPassing(t *testing.T) {
	var out bytes.Buffer
	r := &report{out: &out, buf: map[string][]string{}}
	r.read(strings.NewReader(`{"Action":"pass","Package":"a","Test":"TestA"}` + "\n" + `{"Action":"pass","Package":"a"}` + "\n"))
	r.summary()
	if r.failed || r.packages != 1 || !strings.Contains(out.String(), "skipped tests: none") {
		t.Errorf("failed %v, packages %d, output %q", r.failed, r.packages, out.String())
	}
}

// TestReportRealRun feeds it a real go test -json run of this package's own skip.
func TestReportRealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not running go test in go test")
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "-short", "-run", "TestReportRealRun", ".")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, b)
	}
	var out bytes.Buffer
	r := &report{out: &out, buf: map[string][]string{}}
	r.read(bytes.NewReader(b))
	r.summary()
	if r.failed || !strings.Contains(out.String(), "TestReportRealRun: main_test.go:") ||
		!strings.Contains(out.String(), "-short: not running go test in go test") {
		t.Errorf("report of a real run:\n%s", out.String())
	}
}

// A test binary that ends inside a test (os.Exit, a fatal error) gives that test no result:
// what it printed is shown with the package's FAIL.
func TestReportTestWithoutResult(t *testing.T) {
	var out bytes.Buffer
	r := &report{out: &out, buf: map[string][]string{}}
	r.read(strings.NewReader(`{"Action":"run","Package":"c","Test":"TestDies"}
{"Action":"output","Package":"c","Test":"TestDies","Output":"=== RUN   TestDies\n"}
{"Action":"output","Package":"c","Test":"TestDies","Output":"    c_test.go:7: about to fall over\n"}
{"Action":"output","Package":"c","Output":"FAIL\tc\t0.30s\n"}
{"Action":"fail","Package":"c"}
`))
	r.summary()
	got := out.String()
	if !strings.Contains(got, "--- NO RESULT: TestDies (the test binary ended inside it)\n") || !strings.Contains(got, "about to fall over") {
		t.Errorf("output:\n%s", got)
	}
}
