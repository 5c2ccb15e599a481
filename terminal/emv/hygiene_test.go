package emv_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestHygiene enforces what the package documentation promises: a package
// doc comment, every exported type saying whether it is safe for concurrent
// use, no import of testing outside tests, and a leaf's imports: of posd,
// only the vocabulary packages.
func TestHygiene(t *testing.T) {
	allowed := map[string]bool{"github.com/posd-dev/posd/terminal/card": true}
	fset := token.NewFileSet()
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	hasDoc := false
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		hasDoc = hasDoc || f.Doc != nil
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path == "testing" || strings.HasPrefix(path, "github.com/posd-dev/posd/") && !allowed[path] {
				t.Errorf("%s imports %s", name, path)
			}
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil {
					doc = g.Doc
				}
				if ts.Name.IsExported() && (doc == nil || !strings.Contains(doc.Text(), "concurrent")) {
					t.Errorf("%s: type %s does not say whether it is safe for concurrent use", name, ts.Name)
				}
			}
		}
	}
	if !hasDoc {
		t.Error("the package has no doc comment")
	}
}
