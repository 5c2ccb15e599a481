package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/posd-dev/posd/terminal/padsim"
)

// TestExampleScripts: every shipped pinpad-sim script loads with the simulator's own loader
// and has the events its name promises.
func TestExampleScripts(t *testing.T) {
	for name, want := range map[string]func(padsim.Event) bool{
		"sale.json":    func(e padsim.Event) bool { return e.Swipe != nil },
		"decline.json": func(e padsim.Event) bool { return e.Swipe != nil },
		"chip.json":    func(e padsim.Event) bool { return e.Insert != nil },
		"tap.json":     func(e padsim.Event) bool { return e.Tap != nil },
		"refund.json":  func(e padsim.Event) bool { return e.Tap != nil },
	} {
		s, err := padsim.LoadScript(filepath.Join("../../examples", name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(s.Events) == 0 || !want(s.Events[0]) {
			t.Errorf("%s: first event %v is not the card it should present", name, s.Events)
		}
	}
}

// TestExampleConfig: examples/posd.json passes posd check-config and the checks posd run
// makes before it opens any device, on the binary `go build ./cmd/...` makes (no pkcs11
// tag), from another working directory.
func TestExampleConfig(t *testing.T) {
	path, err := filepath.Abs("../../examples/posd.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("posd check-config %s: exit %d: %s", path, code, stderr.String())
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.checkRuntime(); err != nil {
		t.Errorf("posd run would refuse %s: %v", path, err)
	}
	if c.HSM.Data == nil || c.HSM.Data.Backend != "soft" {
		t.Errorf("the example's data key is not the soft one that runs as built: %+v", c.HSM.Data)
	}
	if want := filepath.Join(filepath.Dir(path), "state", "posd.db"); c.Store.Path != want {
		t.Errorf("store.path %s, want %s (relative to the config file)", c.Store.Path, want)
	}
}

// TestREADMEExamplesExist: every examples/ file the README names is shipped.
func TestREADMEExamplesExist(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`examples/[A-Za-z0-9_.-]+\.json`).FindAllString(string(readme), -1)
	if len(names) < 5 {
		t.Errorf("the README names %d example files (%v): its newcomer's path should use them", len(names), names)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join("../..", n)); err != nil {
			t.Errorf("README names %s: %v", n, err)
		}
	}
}

// What check-config prints loads back, and prints the same again: the example config (whose
// firmware and card reader sections are off, their zero values left out).
func TestCheckConfigOutputLoadsBack(t *testing.T) {
	ex, err := LoadConfig(filepath.Join("..", "..", "examples", "posd.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*Config{"examples/posd.json": ex} {
		var first bytes.Buffer
		if err := writeConfig(&first, cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back, err := ParseConfig(first.Bytes())
		if err != nil {
			t.Fatalf("%s: check-config's output does not load back: %v\n%s", name, err, first.String())
		}
		var second bytes.Buffer
		if err := writeConfig(&second, back); err != nil {
			t.Fatal(err)
		}
		if first.String() != second.String() {
			t.Errorf("%s: printed again, the config differs:\n%s\nthen\n%s", name, first.String(), second.String())
		}
	}
}

// check-config checks what posd run needs on this machine (here: the store's directory),
// unless --elsewhere says the config is for another machine.
func TestCheckConfigElsewhere(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "posd.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "posd.json") // its state/ directory does not exist here
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	err = cmdCheckConfig([]string{"--config", path}, &out, &errw)
	if err == nil || !regexp.MustCompile(`store\.path: the directory .* does not exist`).MatchString(err.Error()) {
		t.Fatalf("check-config without the store's directory: %v", err)
	}
	out.Reset()
	if err := cmdCheckConfig([]string{"--elsewhere", "--config", path}, &out, &errw); err != nil {
		t.Fatalf("check-config --elsewhere: %v", err)
	}
	if _, err := ParseConfig(out.Bytes()); err != nil {
		t.Errorf("check-config --elsewhere printed a config that does not load: %v", err)
	}
}
