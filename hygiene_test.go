// Package posd_test holds repository-wide checks of the rules in STYLE.md and
// ARCHITECTURE.md that are cheap to enforce: every package documented, no catch-all
// packages, test code kept out of binaries, and the arrows between packages going one way.
package posd_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
	Deps       []string
	GoFiles    []string
	Dir        string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

const mod = "github.com/posd-dev/posd"

// leaves are the leaf packages and the only project packages each may import.
var leaves = map[string]map[string]bool{
	"terminal/card":       {},
	"terminal/money":      {},
	"terminal/access":     {"terminal/operators": true, "internal/atomicfile": true},
	"terminal/operators":  {"internal/atomicfile": true},
	"internal/atomicfile": {},
	"terminal/emv":        {"terminal/card": true},
	"terminal/magstripe":  {"terminal/card": true, "terminal/money": true, "internal/serialport": true},
	"internal/serialport": {},

	// The store's raw bbolt page reader: the file format, nothing of posd.
	"store/internal/boltpage": {},
}

func TestHygiene(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		if len(p.GoFiles) == 0 {
			continue // only tests here (this package)
		}
		if p.Doc == "" {
			t.Errorf("%s: no package doc comment", rel)
		}
		switch path.Base(rel) {
		case "util", "utils", "common", "helpers", "misc", "errors":
			t.Errorf("%s: catch-all or stdlib-shadowing package name", rel)
		}
		for _, imp := range p.Imports {
			if imp == "testing" {
				t.Errorf("%s imports testing outside its tests", rel)
			}
		}
		top := strings.SplitN(rel, "/", 2)[0]
		for _, dep := range p.Deps {
			// hsm holds keys: it must not be able to talk to a network.
			if top == "hsm" && (dep == "net" || strings.HasPrefix(dep, "net/")) {
				t.Errorf("%s depends on %s: hsm imports no networking", rel, dep)
			}
			drel := strings.TrimPrefix(dep, mod+"/")
			if drel == dep {
				continue
			}
			// Nothing below terminal imports terminal (its leaf vocabulary packages excepted).
			if (top == "hsm" || top == "iso8583" || top == "store" || top == "firmware") &&
				strings.HasPrefix(drel, "terminal") && drel != "terminal/card" && drel != "terminal/money" {
				t.Errorf("%s imports %s: the arrows go from terminal down, never back", rel, drel)
			}
			// The leaves import nothing of the project but the vocabulary they build on.
			if allowed, leaf := leaves[rel]; leaf && !allowed[drel] {
				t.Errorf("%s imports %s: it is a leaf", rel, drel)
			}
			// Nothing imports a command.
			if strings.HasPrefix(drel, "cmd/") {
				t.Errorf("%s imports the command %s", rel, drel)
			}
		}
	}
}

// TestConcurrencyDocumented enforces STYLE.md practice 14 on every library package: each
// exported type's doc says whether it is safe for concurrent use (or how its callers call
// it: "one goroutine at a time"). Commands are exempt: their types are not an API.
func TestConcurrencyDocumented(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		if strings.HasPrefix(rel, "cmd/") {
			continue
		}
		fset := token.NewFileSet()
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.TYPE {
					continue
				}
				for _, s := range g.Specs {
					ts := s.(*ast.TypeSpec)
					doc := ts.Doc
					if doc == nil && !g.Lparen.IsValid() {
						doc = g.Doc
					}
					text := ""
					if doc != nil {
						text = doc.Text()
					}
					if ts.Name.IsExported() && !strings.Contains(text, "concurrent") && !strings.Contains(text, "goroutine") {
						t.Errorf("%s/%s: type %s does not say whether it is safe for concurrent use", rel, name, ts.Name)
					}
				}
			}
		}
	}
}
