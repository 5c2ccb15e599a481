package firmware_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHygiene enforces what the package documentation and the architecture
// promise: every package here has a doc comment, every exported type says
// whether it is safe for concurrent use, nothing but tests imports testing,
// and package firmware does not import the terminal packages (it reaches
// the PIN pad through PadLink).
func TestHygiene(t *testing.T) {
	for _, dir := range []string{".", "fwapi", "release"} {
		fset := token.NewFileSet()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		hasDoc := false
		for _, e := range ents {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if f.Doc != nil {
				hasDoc = true
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if path == "testing" {
					t.Errorf("%s/%s imports testing", dir, name)
				}
				if strings.HasPrefix(path, "github.com/posd-dev/posd/terminal") {
					t.Errorf("%s/%s imports %s", dir, name, path)
				}
			}
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.TYPE {
					continue
				}
				for _, s := range g.Specs {
					ts := s.(*ast.TypeSpec)
					if !ts.Name.IsExported() {
						continue
					}
					doc := ts.Doc
					if doc == nil {
						doc = g.Doc
					}
					if doc == nil || !strings.Contains(doc.Text(), "concurrent") {
						t.Errorf("%s/%s: type %s does not say whether it is safe for concurrent use", dir, name, ts.Name)
					}
				}
			}
		}
		if !hasDoc {
			t.Errorf("package in %s has no doc comment", dir)
		}
	}
}
